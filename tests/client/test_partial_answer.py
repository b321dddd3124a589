"""A partial answer has its own exit code (8): ``status QUERY_ID`` of a query closed with a
resource missing, and ``import`` (as ``pull``) of the final segment that closed it. The segment
here is sealed with the pinned node's key, as the node's workflow would."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

from typer.testing import CliRunner

from exchange_client.cli import app
from exchange_client.state import PushedBundle, locked_state
from pki.bundle import Member, seal_to_file
from pki.keys import load_certificates, load_private_key

runner = CliRunner()
Q = "3f2c8a6e-5d1b-4c1e-9a57-0c2d5e7f9b10"


def _final_segment(world: dict[str, Path], folder: Path) -> None:
    report = {"due_date": "2026-12-17", "resources": [
        {"resource": "RS-SI-01", "answered_by": "node", "state": "answered", "segment": 1},
        {"resource": "RS-SY-02", "answered_by": "provider", "state": "terminated", "segment": 1},
    ]}  # fmt: skip
    body = json.dumps(report).encode()
    seal_to_file(
        [Member("report.json", io.BytesIO(body), size=len(body))],
        folder / f"result-{Q}-1.bundle",
        signer_key=load_private_key(world["node_key"]),
        signer_chain=load_certificates(world["node_cert"]),
        recipients=load_certificates(world["cert"])[:1],
        kind="result",
        fields={
            "in_reply_to": Q,
            "segment": 1,
            "final": True,
            "status": "partial",
            "at": "2026-12-18T00:00:00+00:00",
        },
        now=dt.datetime.now(dt.UTC),
    )


def test_the_final_segment_of_a_partial_answer_exits_8(
    world: dict[str, Path], client_dir: Path, tmp_path: Path
) -> None:
    with locked_state(client_dir / "state.json") as state:
        state.pushed[Q] = PushedBundle(Q, "query", "2026-12-01T00:00:00Z", 1, 1, "ab",
                                       uploaded_at="t", verdict="accepted")  # fmt: skip
    usb = tmp_path / "usb"
    usb.mkdir()
    _final_segment(world, usb)
    r = runner.invoke(app, ["import", "--dir", str(client_dir), "--from", str(usb)])
    assert r.exit_code == 8, r.output
    assert f"query {Q} closed, not fully answered" in r.stdout
    assert f"query {Q}: missing, due 2026-12-17; RS-SY-02 terminated" in r.stdout
    r = runner.invoke(app, ["status", "--dir", str(client_dir), Q[:6]])
    assert r.exit_code == 8, r.output
    assert "closed, not fully answered" in r.stdout
    r = runner.invoke(app, ["status", "--dir", str(client_dir), Q, "--json"])
    assert r.exit_code == 8
    data = json.loads(r.stdout)
    assert data["state"] == "closed, not fully answered"
    assert data["outstanding"]["state"] == "missing"
    r = runner.invoke(app, ["status", "--dir", str(client_dir)])  # the overview is no error
    assert r.exit_code == 0 and "missing" in r.stdout
