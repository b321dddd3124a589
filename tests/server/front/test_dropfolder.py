"""Removable-media import (办法 第十七条): the drop folder goes through the same checks."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from sqlmodel import select

from exchange_server.front.dropfolder import DropFolder
from exchange_server.outbox.receipts import receipt_name
from exchange_server.store.models import Upload
from tests.conftest import CAFixture
from tests.server.world import World, build_world


@pytest.fixture
def world(tmp_path: Path, test_ca: CAFixture) -> World:
    return build_world(tmp_path, test_ca)


def _drop(world: World) -> DropFolder:
    return DropFolder(
        world.handover, world.node.config.path(world.node.config.drop), settle_seconds=0.05
    )


def test_dropped_bundle_is_imported_as_its_signer(world: World) -> None:
    drop = _drop(world)
    shutil.copyfile(world.seal("RS330100"), drop.folder / "rs-2026-11.bundle")
    (drop.folder / ".still-copying").write_bytes(b"partial")
    [upload_id] = drop.scan()
    assert world.ingest.process(upload_id).value == "done"
    with world.node.session() as s:
        up = s.get(Upload, upload_id)
        assert up is not None and up.dept_code == "RS330100" and up.source == "drop"
    assert (world.ingest.spool.outbox("RS330100") / receipt_name(upload_id)).is_file()
    assert not (drop.folder / "rs-2026-11.bundle").exists()
    assert (drop.folder / ".still-copying").exists()  # dot-files are never imported


def test_dropped_garbage_is_quarantined_without_receipt(world: World) -> None:
    drop = _drop(world)
    (drop.folder / "junk.bundle").write_bytes(b"\x00" * 1000)
    [upload_id] = drop.scan()
    assert world.ingest.process(upload_id).value == "rejected"
    assert (world.ingest.spool.quarantine / upload_id).is_file()
    assert list(world.ingest.spool.root.glob("depts/*/outbox/*")) == []


def test_dropped_copy_of_accepted_bundle_is_a_replay(world: World) -> None:
    drop = _drop(world)
    bundle = world.seal("MZ330100")
    shutil.copyfile(bundle, drop.folder / "a.bundle")
    [first] = drop.scan()
    shutil.copyfile(bundle, drop.folder / "a-again.bundle")
    [second] = drop.scan()
    assert world.ingest.process(first).value == "done"
    assert world.ingest.process(second).value == "rejected"
    with world.node.session() as s:
        assert s.exec(select(Upload.reason_code).where(Upload.id == second)).one() == "E_REPLAY"


def test_watcher_imports_files_that_arrive_later(world: World) -> None:
    drop = _drop(world)
    drop.start()
    try:
        tmp = drop.folder / ".incoming.tmp"
        shutil.copyfile(world.seal("MZ330100"), tmp)
        tmp.rename(drop.folder / "late.bundle")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with world.node.session() as s:
                if s.exec(select(Upload)).all():
                    break
            time.sleep(0.05)
        else:
            pytest.fail("the drop folder watcher did not import the file")
    finally:
        drop.stop()
