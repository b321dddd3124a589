"""Several node processes, one state: two ``exchange-server serve`` processes on one PostgreSQL
database and one spool (one host, as behind a TCP load balancer) serve the same departments.

Departments upload to either process; one process is SIGKILLed in the middle of the load and
restarted while the other carries on. Afterwards every upload was processed exactly once: one
final state and one receipt each, no bundle id accepted twice, one audit chain that verifies.
Runs only where PostgreSQL is reachable (CI has it); SQLite is one process's store.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange_server.store.audit import verify_chain
from exchange_server.store.checkpoints import (
    node_public_key,
    origin_for,
    published_checkpoint,
    verify_trail,
)
from tests.integration.node_harness import DeptSpec, NodeHarness, wait_until
from tests.server.conftest import _PG_PROBLEM, PG_URL, pg_schema_url

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

MZ, RS = "MZ330100", "RS330100"
ROUNDS = 3  # uploads per department per round and process


@pytest.fixture
def pg_schema() -> Iterator[str]:
    if _PG_PROBLEM is not None:
        pytest.skip(f"PostgreSQL not reachable at {PG_URL} ({_PG_PROBLEM})")
    with pg_schema_url() as url:
        yield url


async def _upload_round(node: NodeHarness, tmp: Path, tag: str) -> list[str]:
    """Each department uploads ROUNDS bundles to ``node`` over one SFTP session; the names."""
    names: list[str] = []
    for code in (MZ, RS):
        async with (
            node.asyncssh_connect(code, bind=node.depts[code].address) as conn,
            conn.start_sftp_client() as sftp,
        ):
            for i in range(ROUNDS):
                bundle = node.seal(code, f"id,n\n{i},{tag}\n".encode(), tmp / f"{tag}-{code}-{i}")
                name = f"{tag}-{code}-{i}.bundle"
                await sftp.put(str(bundle), f"/inbox/{name}")
                names.append(name)
    return names


def test_two_processes_on_one_state_process_each_upload_once(
    tmp_path: Path, pg_schema: str
) -> None:
    depts = [DeptSpec(MZ), DeptSpec(RS, addresses=("127.0.0.2",))]
    with NodeHarness(tmp_path / "node", depts, database=pg_schema) as a:  # started
        b = a.twin("b")
        b.start()
        try:
            sent = asyncio.run(_upload_round(a, tmp_path, "a1"))
            sent += asyncio.run(_upload_round(b, tmp_path, "b1"))
            a.kill()  # a crash of one process, uploads of its pipeline perhaps half done
            sent += asyncio.run(_upload_round(b, tmp_path, "b2"))  # the other carries on
            a.start()  # the restarted one recovers, beside the live one
            sent += asyncio.run(_upload_round(a, tmp_path, "a2"))
            sent += asyncio.run(_upload_round(b, tmp_path, "b3"))

            def settled() -> bool:
                ups = a.uploads()
                return len(ups) == len(sent) and all(u.state in ("done", "rejected") for u in ups)

            wait_until(settled, timeout=120, what="every upload processed")
        finally:
            b.stop()
        uploads = a.uploads()
        assert sorted(u.file_name for u in uploads) == sorted(sent)
        assert all(u.state == "done" for u in uploads), [
            (u.file_name, u.reason_code) for u in uploads
        ]
        assert len({u.bundle_id for u in uploads}) == len(uploads)  # no bundle accepted twice
        receipts = Counter(
            p.name for code in (MZ, RS) for p in a.outbox(code).glob("receipt-*.bundle")
        )
        assert sorted(receipts) == sorted(f"receipt-{u.id}.bundle" for u in uploads)
        assert set(receipts.values()) == {1}
        with a.node() as node, node.session(write=False) as s:
            verify_chain(s)  # one audit chain, written by both processes
        a.stop()  # b's shutdown checkpoint, then a's: one tree, signed by both processes
        with a.node() as node, node.session(write=False) as s:
            published = published_checkpoint(node)
            assert published is not None
            report = verify_trail(
                s, node_public_key(node), origin_for(node.config.code), external=[published]
            )
            assert report.checkpoints >= 1 and report.newest is not None
            assert report.newest.size == report.events
