"""Pulled outbox files leave the quota: the SFTP front records a complete download as a pull
(once, audited) and the department's outstanding bytes no longer count it. On a real node home
and store (SQLite, and PostgreSQL when reachable), driving the session object directly.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncssh
import pytest
from sqlmodel import select

from exchange_server.front.sftp import DepartmentSFTPServer
from exchange_server.front.sftp_services import SessionInfo, SFTPServices
from exchange_server.store.audit import verify_chain
from exchange_server.store.models import AuditEvent, Department, OutboxPull
from exchange_server.store.pulls import PULL_ACTION
from pki.identity import DeptCode
from tests.conftest import CAFixture
from tests.server.world import World, build_world

MZ = "MZ330100"
FLAGS_PUT = asyncssh.FXF_WRITE | asyncssh.FXF_CREAT | asyncssh.FXF_TRUNC


@pytest.fixture
def world(tmp_path: Path, test_ca: CAFixture, store_url: str) -> World:
    return build_world(tmp_path, test_ca, store_url)


@pytest.fixture
def services(world: World) -> Iterator[SFTPServices]:
    pool = ThreadPoolExecutor(2)
    yield SFTPServices(
        node=world.node, ingest=world.handover, executor=pool, max_upload_bytes=1 << 20
    )
    pool.shutdown()


def _quota(world: World, quota: int) -> None:
    with world.node.session() as s:
        row = s.get(Department, MZ)
        assert row is not None
        row.quota_bytes = quota
        s.add(row)


def _pull(server: DepartmentSFTPServer, name: str, size: int) -> None:
    async def body() -> None:
        handle = await server.open(
            f"/outbox/{name}".encode(), asyncssh.FXF_READ, asyncssh.SFTPAttrs()
        )
        offset = 0
        while data := server.read(handle, offset, 1000):
            offset += len(data)
        assert offset == size
        done = server.close(handle)
        assert done is not None
        await done

    asyncio.run(body())


def test_a_pulled_file_no_longer_counts_against_the_quota(
    world: World, services: SFTPServices
) -> None:
    outbox = world.ingest.spool.outbox(MZ)
    (outbox / "result-a.bundle").write_bytes(os.urandom(5000))
    (outbox / "receipt-b.bundle").write_bytes(os.urandom(700))
    _quota(world, 5500)
    server = DepartmentSFTPServer(None, services, SessionInfo(DeptCode(MZ), "127.0.0.1"))
    assert services.usage(MZ) == (5700, 5500)

    async def upload() -> object:
        return await server.open(b"/inbox/q.bundle", FLAGS_PUT, asyncssh.SFTPAttrs())

    with pytest.raises(asyncssh.SFTPQuotaExceeded):
        asyncio.run(upload())
    _pull(server, "result-a.bundle", 5000)
    assert services.usage(MZ) == (700, 5500)  # the file is still listed, but counts no more
    assert (outbox / "result-a.bundle").is_file()
    up = asyncio.run(upload())  # now there is room
    server.close(up)  # not the client's close request: discarded
    # pulled again: recorded and audited once only
    _pull(server, "result-a.bundle", 5000)
    with world.node.session(write=False) as s:
        [row] = s.exec(select(OutboxPull)).all()
        assert (row.dept_code, row.name, row.size) == (MZ, "result-a.bundle", 5000)
        [event] = s.exec(select(AuditEvent).where(AuditEvent.action == PULL_ACTION)).all()
        assert event.subject == MZ
        assert json.loads(event.detail) == {
            "address": "127.0.0.1",
            "name": "result-a.bundle",
            "size": 5000,
        }
        verify_chain(s)


def test_a_new_file_under_a_pulled_name_counts_until_it_is_pulled(
    world: World, services: SFTPServices
) -> None:
    outbox = world.ingest.spool.outbox(MZ)
    (outbox / "list.bundle").write_bytes(b"x" * 300)
    server = DepartmentSFTPServer(None, services, SessionInfo(DeptCode(MZ), "127.0.0.1"))
    _pull(server, "list.bundle", 300)
    assert services.usage(MZ)[0] == 0
    (outbox / "list.bundle").write_bytes(b"y" * 400)
    services._usage_cache.clear()
    assert services.usage(MZ)[0] == 400
