"""Signed checkpoints from a running node: ``serve`` checkpoints the audit trail at its interval
and at shutdown, publishes the newest one, and an inspector's extract exported by the real
``exchange-server`` verifies with the real ``exchange-pki``, offline."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import func, select

from exchange_server.store.models import AuditCheckpoint, AuditEvent
from tests.integration.node_harness import DeptSpec, NodeHarness, require_binary, wait_until

pytestmark = pytest.mark.integration

MZ = "MZ330100"
BIN = Path(sys.executable).parent


def _counts(h: NodeHarness) -> tuple[int, int]:
    """(events, the newest checkpoint's size)."""
    with h.node() as node, node.session(write=False) as s:
        events = s.exec(select(func.count()).select_from(AuditEvent)).one()
        newest = s.exec(select(func.max(AuditCheckpoint.size))).one()
        return int(events), int(newest or 0)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


def test_serve_checkpoints_at_its_interval_and_at_shutdown(tmp_path: Path) -> None:
    h = NodeHarness(tmp_path / "node", [DeptSpec(MZ)], audit={"checkpoint_seconds": 1})
    with h:
        h.seal(MZ, b"id\n1\n", h.root / "a.tmp").rename(h.home / "drop" / "a.bundle")
        wait_until(lambda: [u for u in h.uploads() if u.state == "done"], what="the upload")
        wait_until(
            lambda: _counts(h)[1] > 0,
            timeout=30,
            what="a checkpoint signed at the interval",
        )
        assert "audit checkpoint signed" in h.log_text()
    events, newest = _counts(h)
    assert events > 0 and newest == events  # the shutdown one covers everything
    published = h.home / "audit" / "checkpoint"
    assert published.read_text("utf-8").split("\n")[1] == str(events)

    verify = _run(str(BIN / "exchange-server"), "audit", "verify", "--home", str(h.home), "--json")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    doc = json.loads(verify.stdout)
    assert doc["intact"] and doc["external_checkpoints"] == 1
    assert doc["newest_checkpoint"]["size"] == events

    out = tmp_path / "extract.json"
    export = _run(
        str(BIN / "exchange-server"), "audit", "export", "--home", str(h.home),
        "--department", MZ, "-o", str(out),
    )  # fmt: skip
    assert export.returncode == 0, export.stderr
    assert out.stat().st_mode & 0o077 == 0
    check = _run(
        str(BIN / "exchange-pki"), "audit", "verify", str(out),
        "--trust", str(h.root / "ca" / "root.pem"), "--crl", str(h.root / "ca" / "crl.pem"),
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    assert "extract verified" in check.stdout and "Traceback" not in check.stderr


def test_stock_openssl_checks_a_checkpoint_signature(tmp_path: Path) -> None:
    """The documented stock-tool procedure (docs/audit.md) accepts the node's checkpoint and
    refuses one whose size was edited."""
    openssl = require_binary("openssl")
    h = NodeHarness(tmp_path / "node", [DeptSpec(MZ)]).build()
    made = _run(str(BIN / "exchange-server"), "audit", "checkpoint", "--home", str(h.home))
    assert made.returncode == 0, made.stderr
    pub = _run(openssl, "x509", "-in", str(h.home / "node" / "node.pem"), "-pubkey", "-noout")
    (tmp_path / "node.pub").write_text(pub.stdout)
    for note, expected in ((made.stdout, 0), (made.stdout.replace("\n", "\n9", 1), 1)):
        lines = note.split("\n")
        (tmp_path / "body.txt").write_text("\n".join(lines[:3]) + "\n")
        blob = base64.b64decode(lines[4].split(" ")[2])
        (tmp_path / "sig.der").write_bytes(blob[4:])
        r = _run(
            openssl, "dgst", "-sha256", "-verify", str(tmp_path / "node.pub"),
            "-signature", str(tmp_path / "sig.der"), str(tmp_path / "body.txt"),
        )  # fmt: skip
        assert r.returncode == expected, r.stdout + r.stderr
        assert ("Verified OK" in r.stdout) == (expected == 0)
