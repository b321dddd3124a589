"""A burst of logins: the SFTP front queues their audit events and writes each batch in one
transaction. Every login is in the trail, in order, and the chain verifies."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from exchange_server.store.audit import verify_chain
from tests.integration.node_harness import DeptSpec, NodeHarness, wait_until

pytestmark = pytest.mark.integration

MZ = "MZ330100"
LOGINS = 40


async def _login_and_leave(node: NodeHarness) -> None:
    async with node.asyncssh_connect(MZ) as conn, conn.start_sftp_client() as sftp:
        await sftp.listdir("/outbox")


def test_a_burst_of_logins_is_audited_whole(tmp_path: Path) -> None:
    security = {"max_preauth_per_address": LOGINS, "max_preauth_connections": LOGINS * 2}
    with NodeHarness(tmp_path / "node", [DeptSpec(MZ)], security=security) as node:

        async def burst() -> None:
            await asyncio.gather(*(_login_and_leave(node) for _ in range(LOGINS)))

        asyncio.run(burst())
        wait_until(
            lambda: len(node.audit("login.ok")) >= LOGINS, timeout=60, what="every login audited"
        )
        events = node.audit("login.ok")
        assert len(events) == LOGINS
        assert [e.seq for e in events] == sorted(e.seq for e in events)
        with node.node() as n, n.session(write=False) as s:
            verify_chain(s)
