"""Removable-media import (办法 第十七条): the drop folder goes through the same checks."""

from __future__ import annotations

import shutil
import stat
import time
from pathlib import Path

import pytest
from sqlmodel import select

from exchange_server.front.dropfolder import DropFolder, owner_only_folder
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


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_plaintext_table_dropped_by_mistake_is_kept_from_others(world: World) -> None:
    drop = _drop(world)
    drop.folder.chmod(0o755)  # as an operator might have made it
    table = drop.folder / "低保名单.csv"
    table.write_text("身份证号,姓名\n330102195001010011,张三\n", encoding="utf-8")
    table.chmod(0o644)
    owner_only_folder(drop.folder)  # what start() does first
    assert _mode(drop.folder) == 0o700
    [upload_id] = drop.scan()
    assert world.ingest.process(upload_id).value == "rejected"
    imported = drop.done / f"{upload_id}-低保名单.csv"
    assert _mode(drop.done) == 0o700 and _mode(imported) == 0o600
    quarantined = world.ingest.spool.quarantine / upload_id
    assert _mode(quarantined) == 0o600 and _mode(quarantined.parent) == 0o700


def test_every_upload_is_owner_only_from_its_hand_over(world: World) -> None:
    path = world.seal("MZ330100")
    path.chmod(0o644)
    upload_id = world.upload("MZ330100", path)  # the partial was written with the umask's mode
    assert _mode(world.ingest.spool.incoming_path(upload_id)) == 0o600
    assert world.ingest.process(upload_id).value == "done"
    [stored] = world.ingest.spool.store.iterdir()
    assert _mode(stored) == 0o600 and _mode(stored.parent) == 0o700
