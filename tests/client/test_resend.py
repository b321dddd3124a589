"""``resend`` refuses what it cannot or need not send, before any connection; ``status`` names
each pushed bundle's stage. No node: the directory's node is never reachable."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from typer.testing import CliRunner, Result

from exchange_client.cli import app
from exchange_client.state import PushedBundle, locked_state

runner = CliRunner()

SEALED = "3f2c8a6e-5d1b-4c1e-9a57-0c2d5e7f9b10"
UPLOADED = "4a000000-0000-4000-8000-000000000002"
EXPORTED = "5b000000-0000-4000-8000-000000000003"
ACCEPTED = "6c000000-0000-4000-8000-000000000004"
REJECTED = "7d000000-0000-4000-8000-000000000005"


def _run(*args: str) -> Result:
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def _kept(client_dir: Path, bundle_id: str, **kw: str) -> Path:
    """A bundle ``bundle_id`` recorded as pushed, its sealed copy in ``sent/``."""
    body = f"sealed {bundle_id}".encode()
    path = client_dir / "sent" / f"{bundle_id}.bundle"
    path.parent.mkdir(mode=0o700, exist_ok=True)
    path.write_bytes(body)
    digest = hashlib.sha256(body).hexdigest()
    with locked_state(client_dir / "state.json") as state:
        state.pushed[bundle_id] = PushedBundle(
            bundle_id, "recheck", f"2026-12-01T00:00:0{len(state.pushed)}Z", 1, len(body), digest,
            **kw,
        )  # fmt: skip
    return path


def test_status_names_every_stage(client_dir: Path) -> None:
    _kept(client_dir, SEALED)
    _kept(client_dir, UPLOADED, uploaded_at="2026-12-01T00:01:00Z")
    _kept(client_dir, EXPORTED, exported_to="/media/usb/x.bundle")
    _kept(client_dir, ACCEPTED, uploaded_at="t", verdict="accepted")
    _kept(client_dir, REJECTED, uploaded_at="t", verdict="rejected", reason_code="E_SIGNER")
    r = _run("status", "--dir", str(client_dir), "--json")
    assert r.exit_code == 0, r.output
    stages = {p["bundle_id"]: p["stage"] for p in json.loads(r.stdout)["pushed"]}
    assert stages == {
        SEALED: "sealed",
        UPLOADED: "uploaded",
        EXPORTED: "exported",
        ACCEPTED: "accepted",
        REJECTED: "rejected",
    }
    table = _run("status", "--dir", str(client_dir)).stdout
    rows = {line.split()[1]: line for line in table.splitlines() if line.startswith("│")}
    assert "sealed, not uploaded" in rows[SEALED]
    assert "uploaded, awaiting receipt" in rows[UPLOADED]
    assert "exported, awaiting receipt" in rows[EXPORTED]
    assert "accepted" in rows[ACCEPTED] and "rejected (E_SIGNER)" in rows[REJECTED]
    assert f"it never reached the node: exchange-client resend {SEALED}" in table


def test_resend_refuses_an_unknown_id(client_dir: Path) -> None:
    r = _run("resend", "--dir", str(client_dir), "0000dead")
    assert r.exit_code == 3, r.output
    assert "(E_NOT_FOUND)" in r.stderr and "Traceback" not in r.output


def test_resend_refuses_a_bundle_the_node_answered(client_dir: Path) -> None:
    _kept(client_dir, ACCEPTED, uploaded_at="t", verdict="accepted")
    _kept(client_dir, REJECTED, uploaded_at="t", verdict="rejected", reason_code="E_SIGNER")
    for bundle_id, verdict in ((ACCEPTED, "accepted"), (REJECTED, "rejected")):
        r = _run("resend", "--dir", str(client_dir), bundle_id[:6])
        assert r.exit_code == 3, r.output
        assert f"already {verdict}" in r.stderr and "(E_ANSWERED)" in r.stderr
        assert "hint: " in r.stderr


def test_resend_refuses_a_bundle_whose_file_is_gone_or_changed(client_dir: Path) -> None:
    _kept(client_dir, SEALED).unlink()  # e.g. the sent/ policy, or a hand
    r = _run("resend", "--dir", str(client_dir), SEALED)
    assert r.exit_code == 3, r.output
    assert "is gone" in r.stderr and "(E_SENT_MISSING)" in r.stderr
    _kept(client_dir, UPLOADED).write_bytes(b"another bundle")
    r = _run("resend", "--dir", str(client_dir), UPLOADED)
    assert r.exit_code == 3, r.output
    assert "is not the bundle that was sealed" in r.stderr and "(E_SENT_MISSING)" in r.stderr


def test_resend_of_a_kept_bundle_tries_the_node(client_dir: Path) -> None:
    """Nothing refuses it locally: the (unreachable) node is tried, exit 5."""
    _kept(client_dir, SEALED)
    r = _run("resend", "--dir", str(client_dir), SEALED[:8], "--retries", "0")
    assert r.exit_code == 5, r.output
    assert "(E_UNREACHABLE)" in r.stderr or "(E_TIMEOUT)" in r.stderr
