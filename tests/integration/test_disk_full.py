"""A full disk under the spool: a real small filesystem (tmpfs) mounted as the node's spool.

An upload that does not fit is refused cleanly (the client is told there is no space), nothing
of it stays visible (no partial, no file in incoming/, no record), and the node serves the next
upload as soon as the space is back, without a restart. Needs root to mount (CI runs as root);
skips with the reason otherwise.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import asyncssh
import pytest

from tests.integration.node_harness import DeptSpec, NodeHarness, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

MZ = "MZ330100"
SIZE = 4 * 1024 * 1024


def _mount(target: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    run = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0700", "tmpfs", str(target)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if run.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {run.stderr.strip()}")


def test_full_spool_refuses_the_upload_cleanly_and_recovers(tmp_path: Path) -> None:
    h = NodeHarness(tmp_path / "node", [DeptSpec(MZ)])
    h.build()
    spool = h.home / "spool"
    _mount(spool)
    try:
        h.start()
        big = tmp_path / "big.bundle"
        big.write_bytes(os.urandom(SIZE + 512 * 1024))  # more than the whole filesystem

        async def put(path: Path, name: str) -> None:
            async with h.asyncssh_connect(MZ) as conn, conn.start_sftp_client() as sftp:
                await sftp.put(str(path), f"/inbox/{name}")

        with pytest.raises(asyncssh.SFTPError):
            asyncio.run(put(big, "big.bundle"))
        # nothing half-visible, nothing recorded, the space is free again
        wait_until(lambda: h.partial_files() == [], timeout=10, what="the partial removed")
        assert h.incoming_files() == [] and h.uploads() == []
        assert os.statvfs(spool).f_bavail * os.statvfs(spool).f_frsize > SIZE // 2
        # the next upload goes through, without a restart
        small = h.seal(MZ, b"id,n\n1,x\n", tmp_path / "small.bundle")
        asyncio.run(put(small, "small.bundle"))
        wait_until(lambda: any(h.outbox(MZ).glob("receipt-*.bundle")), timeout=30, what="receipt")
        assert [u.state for u in h.uploads()] == ["done"]
        assert "E_IO" in h.log_text() or "space" in h.log_text()
    finally:
        h.__exit__(None, None, None)
        subprocess.run(["umount", str(spool)], check=False)
