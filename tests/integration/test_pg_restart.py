"""PostgreSQL restarted in the middle of the load: the node reconnects and loses nothing.

A node on a PostgreSQL state store takes uploads from two departments while the database
server restarts (``pg_ctlcluster … restart``). Uploads whose record could not be committed are
not acknowledged, so the client retries them, as a real client does; afterwards every upload
the node acknowledged was processed exactly once, with one receipt, and the audit chain holds.
Needs the machine's PostgreSQL cluster and root to restart it (the CI machine has both); skips
with the reason otherwise.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import asyncssh
import pytest

from exchange_server.store.audit import verify_chain
from tests.integration.node_harness import DeptSpec, NodeHarness, wait_until
from tests.integration.test_two_processes import MZ, RS, pg_schema  # noqa: F401 - fixture
from tests.server.conftest import PG_URL

pytestmark = [
    pytest.mark.serial,
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

UPLOADS = 12  # per department


def _cluster() -> list[str]:
    ctl = shutil.which("pg_ctlcluster")
    etc = Path("/etc/postgresql")
    versions = sorted(v.name for v in etc.iterdir()) if etc.is_dir() else []
    if ctl is None or not versions or os.geteuid() != 0 or "127.0.0.1" not in PG_URL:
        pytest.skip("needs root and the local PostgreSQL cluster (pg_ctlcluster) to restart it")
    return [ctl, "--skip-systemctl-redirect", versions[-1], "main"]


def _pg_up() -> bool:
    run = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-c", "select 1"],
        capture_output=True, check=False,
    )  # fmt: skip
    return run.returncode == 0


async def _upload_all(node: NodeHarness, tmp: Path, code: str) -> list[str]:
    """Upload UPLOADS bundles, each retried (new connection) until the node acknowledges it."""
    names: list[str] = []
    for i in range(UPLOADS):
        bundle = node.seal(code, f"id,n\n{i},x\n".encode(), tmp / f"{code}-{i}.bundle")
        name = f"{code}-{i}.bundle"
        deadline = time.monotonic() + 90
        while True:
            try:
                async with (
                    node.asyncssh_connect(code, bind=node.depts[code].address) as conn,
                    conn.start_sftp_client() as sftp,
                ):
                    await sftp.put(str(bundle), f"/inbox/{name}")
                break
            except (asyncssh.Error, OSError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)  # the client's retry, as exchange-client's backoff
        names.append(name)
    return names


def test_postgresql_restart_mid_load_loses_nothing(tmp_path: Path, pg_schema: str) -> None:  # noqa: F811
    cluster = _cluster()
    depts = [DeptSpec(MZ), DeptSpec(RS, addresses=("127.0.0.2",))]
    with NodeHarness(tmp_path / "node", depts, database=pg_schema) as node:
        sent: list[str] = []

        def load(code: str) -> None:
            sent.extend(asyncio.run(_upload_all(node, tmp_path, code)))

        threads = [threading.Thread(target=load, args=(c,)) for c in (MZ, RS)]
        for t in threads:
            t.start()
        wait_until(lambda: len(node.uploads()) >= 3, timeout=60, what="load under way")
        try:
            subprocess.run([*cluster, "restart"], check=True, capture_output=True, timeout=120)
        finally:
            wait_until(_pg_up, timeout=60, what="PostgreSQL back")
        for t in threads:
            t.join(180)
        assert len(sent) == 2 * UPLOADS

        def settled() -> bool:
            ups = node.uploads()
            return len(ups) >= len(sent) and all(u.state in ("done", "rejected") for u in ups)

        wait_until(settled, timeout=120, what="every acknowledged upload processed")
        uploads = node.uploads()
        # each name was acknowledged once; a retry after an unacknowledged attempt is a new
        # upload of the same bundle, refused as a replay when the first had in fact been kept
        assert {u.file_name for u in uploads} == set(sent)
        done = [u for u in uploads if u.state == "done"]
        assert sorted(u.file_name for u in done) == sorted(sent)
        assert all(u.reason_code == "E_REPLAY" for u in uploads if u.state == "rejected")
        receipts = Counter(
            p.name for code in (MZ, RS) for p in node.outbox(code).glob("receipt-*.bundle")
        )
        assert sorted(receipts) == sorted(f"receipt-{u.id}.bundle" for u in uploads)
        with node.node() as n, n.session(write=False) as s:
            verify_chain(s)
