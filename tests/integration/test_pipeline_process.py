"""The ingest pipeline runs in a child process of ``serve``: it is supervised and dies with it."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.integration.node_harness import DeptSpec, NodeHarness, wait_until

pytestmark = pytest.mark.integration


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie has exited; it only waits to be reaped by its (possibly dead) parent
    return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"


def _drop_bundle(h: NodeHarness, name: str) -> None:
    h.seal("MZ330100", b"id\n1\n", h.root / f"{name}.tmp").rename(h.home / "drop" / name)


def test_killed_pipeline_is_restarted_and_keeps_processing(tmp_path: Path) -> None:
    with NodeHarness(tmp_path / "node", [DeptSpec("MZ330100")]) as h:
        assert h.proc is not None
        [child] = wait_until(lambda: _children(h.proc.pid) if h.proc else None, what="pipeline")
        os.kill(child, signal.SIGKILL)
        new = wait_until(
            lambda: [c for c in _children(h.proc.pid) if c != child] if h.proc else None,
            timeout=10,
            what="a restarted pipeline",
        )
        assert new and new[0] != child
        _drop_bundle(h, "after-restart.bundle")
        wait_until(
            lambda: [u for u in h.uploads() if u.state == "done"],
            timeout=30,
            what="the bundle to be processed by the restarted pipeline",
        )
        assert "ingest pipeline exited" in h.log_text()


def test_pipeline_dies_with_a_killed_server(tmp_path: Path) -> None:
    h = NodeHarness(tmp_path / "node", [DeptSpec("MZ330100")])
    with h:
        assert h.proc is not None
        [child] = wait_until(lambda: _children(h.proc.pid) if h.proc else None, what="pipeline")
        h.kill()  # SIGKILL the server: no clean-up runs in it
        deadline = time.monotonic() + 5
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child), "the pipeline outlived its server"
