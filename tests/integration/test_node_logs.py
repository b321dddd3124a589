"""``exchange-server serve`` logging to a file: JSON lines from both of its processes, owner-only,
rotated by size, one writer, its level applied, and no ID number unmasked in any line."""

from __future__ import annotations

import datetime as dt
import json
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.common.test_idnumber import make_id
from tests.integration.node_harness import DeptSpec, NodeHarness, wait_until

pytestmark = pytest.mark.integration

MZ = "MZ330100"
#: A valid, made-up GB 11643 number (check character computed): never real personal data.
ID = make_id("330102", dt.date(1990, 1, 1), 123)
MASKED = ID[:6] + "********" + ID[-4:]


def _drop(h: NodeHarness, name: str, body: bytes | None = None) -> None:
    """A file into the drop folder, appearing whole: a sealed bundle, or ``body`` as is."""
    tmp = h.root / f"{name}.tmp"
    if body is None:
        h.seal(MZ, b"id\n1\n", tmp)
    else:
        tmp.write_bytes(body)
    tmp.rename(h.home / "drop" / name)


def _settled(h: NodeHarness, count: int) -> bool:
    ups = h.uploads()
    return len(ups) == count and all(u.state in ("done", "rejected") for u in ups)


def _log_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("serve.log*") if not p.name.endswith(".lock"))


def test_serve_writes_private_rotated_json_lines_from_both_processes(tmp_path: Path) -> None:
    folder = tmp_path / "logs"  # not there yet: serve makes it, owner-only
    log_file = folder / "serve.log"
    h = NodeHarness(
        tmp_path / "node",
        [DeptSpec(MZ)],
        log={"max_bytes": 1024, "backups": 50},
        serve_args=["--log-file", str(log_file), "--log-format", "json"],
    )
    with h:
        assert h.proc is not None
        serve_pid = h.proc.pid
        for i in range(4):
            _drop(h, f"push-{i}.bundle")
        # Not a bundle, named after a person: the drop folder logs the name it imported.
        _drop(h, f"{ID}.bundle", b"not a bundle")
        wait_until(lambda: _settled(h, 5), timeout=60, what="five uploads processed")
        wait_until(lambda: len(_log_files(folder)) >= 3, timeout=30, what="rotated log files")
        # A second process on the same file would rotate it under the first: refused.
        second = subprocess.run(
            h._command(),
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        assert second.returncode == 3, second.stderr
        assert "written by another process" in second.stderr and "(E_CONFIG)" in second.stderr
        assert "Traceback" not in second.stderr
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    records: list[dict[str, Any]] = []
    for path in _log_files(folder):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        text = path.read_text("utf-8")
        assert ID not in text, path
        records += [json.loads(line) for line in text.splitlines()]
    for r in records:
        assert {"time", "level", "logger", "message", "pid"} <= set(r), r
        assert r["time"].endswith("Z") and dt.datetime.fromisoformat(r["time"]).tzinfo
    messages = [r["message"] for r in records]
    assert any(m.startswith(f"imported {MASKED}.bundle from the drop folder") for m in messages)
    assert any(
        r["logger"].startswith("exchange_server.pipeline") and r["pid"] != serve_pid
        for r in records
    ), "no line from the pipeline process"
    assert any("serving SFTP" in r["message"] and r["pid"] == serve_pid for r in records)
    assert "serving SFTP" not in h.log_text()  # nothing went to stderr


def test_serve_leaves_out_lines_below_its_level(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "serve.log"
    h = NodeHarness(
        tmp_path / "node",
        [DeptSpec(MZ)],
        serve_args=["--log-file", str(log_file), "--log-level", "WARNING"],
    )
    with h:
        _drop(h, "ok.bundle")
        _drop(h, "bad.bundle", b"not a bundle")
        wait_until(lambda: _settled(h, 2), timeout=60, what="two uploads processed")
        wait_until(
            lambda: " rejected: " in log_file.read_text("utf-8"),
            timeout=30,
            what="the pipeline's rejection in the log",
        )
    lines = log_file.read_text("utf-8").splitlines()
    assert any(" WARNING exchange_server.pipeline." in line for line in lines), lines
    assert not [line for line in lines if " INFO " in line or " DEBUG " in line]
