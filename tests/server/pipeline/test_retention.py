"""Retention with an injected clock: nothing needed is purged, everything expired is.

The world holds an open query, a closed query whose period runs from its (recent) close, an old
closed query, a data push, quarantined uploads old and new, outbox files pulled long ago and
lately, and plaintext and sealed files in the drop folder, old and new. Times are set in the
store and on the files; the run is judged at a chosen ``now`` (SQLite, and PostgreSQL when
reachable). No sleeps: file ages are mtimes set with ``os.utime``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import fcntl
import json
import os
import shutil
import uuid
from pathlib import Path

import pytest
from sqlmodel import col, select

from exchange_server.config import RetentionConfig
from exchange_server.outbox.receipts import receipt_name
from exchange_server.pipeline import retention
from exchange_server.pipeline.queries import relay_id, relay_name, result_name
from exchange_server.pipeline.retention import (
    LOCK_NAME,
    PURGE_ACTION,
    Verdict,
    decide,
    run_retention,
)
from exchange_server.pipeline.retention_scan import Item, Material
from exchange_server.store.audit import verify_chain
from exchange_server.store.models import AuditEvent, Query, Upload
from exchange_server.store.pulls import record_pull
from tests.server.pipeline.test_relays import MIXED, _query
from tests.server.pipeline.test_workflow import MZ, RS, _push_data, _push_query
from tests.server.world import World

#: The judged moment: the wall clock's (files made by the test without a set time are fresh),
#: everything old is set relative to it.
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
POLICY = RetentionConfig(
    evidence_days=400, quarantine_days=30, drop_plaintext_minutes=60, pulled_outbox_days=7
)


@pytest.fixture
def world(catalog_world: World) -> World:
    """The test world with the example catalog published and the Workflow as router."""
    w = catalog_world
    w.node.config = dataclasses.replace(w.node.config, retention=POLICY)
    return w


def _ago(**delta: float) -> dt.datetime:
    return NOW - dt.timedelta(**delta)


def _touch(path: Path, when: dt.datetime) -> Path:
    os.utime(path, (when.timestamp(), when.timestamp()))
    return path


def _upload_at(world: World, upload_id: str, when: dt.datetime) -> None:
    with world.node.session() as s:
        row = s.get(Upload, upload_id)
        assert row is not None
        row.updated_at = when
        s.add(row)


def _closed_at(world: World, query_id: str, when: dt.datetime) -> None:
    with world.node.session() as s:
        row = s.get(Query, query_id)
        assert row is not None and row.state == "closed"
        row.closed_at = when
        s.add(row)


def _files(world: World) -> set[str]:
    """Every file under the home's spool and drop folder (relative), lock file aside."""
    home = world.node.config.home
    return {
        str(p.relative_to(home))
        for top in (home / "spool", home / "drop")
        for p in top.rglob("*")
        if p.is_file() and p.name != LOCK_NAME
    }


def _events(world: World) -> list[AuditEvent]:
    with world.node.session(write=False) as s:
        return list(s.exec(select(AuditEvent).order_by(col(AuditEvent.seq))))


def _build(world: World) -> dict[str, str]:
    """The world described in the module docstring; returns the names of its parts."""
    spool = world.ingest.spool
    mz, rs = spool.outbox(MZ), spool.outbox(RS)
    data = _push_data(world)
    assert data.bundle_id is not None and data.receipt_name is not None
    _upload_at(world, data.id, _ago(days=500))
    _touch(rs / data.receipt_name, _ago(days=500))
    old = _push_query(world)
    assert old.bundle_id is not None and old.state == "done"
    _upload_at(world, old.id, _ago(days=600))
    _closed_at(world, old.bundle_id, _ago(days=600))
    for name in (receipt_name(old.id), result_name(old.bundle_id)):
        _touch(mz / name, _ago(days=600))
    # received long ago, closed lately: its period runs from the close
    fresh = _push_query(world)
    assert fresh.bundle_id is not None
    _upload_at(world, fresh.id, _ago(days=450))
    _closed_at(world, fresh.bundle_id, _ago(days=100))
    for name in (receipt_name(fresh.id), result_name(fresh.bundle_id)):
        _touch(mz / name, _ago(days=450))
    # open (a relay waits): nothing of it goes, however old
    open_q = _query(world, MIXED)
    assert open_q.state == "routed" and open_q.bundle_id is not None
    _upload_at(world, open_q.id, _ago(days=900))
    rid = relay_id(open_q.bundle_id, "RS-JY-01")
    for path in (
        mz / receipt_name(open_q.id),
        mz / result_name(open_q.bundle_id),
        rs / relay_name(rid),
    ):
        _touch(path, _ago(days=900))
    # quarantine: rejected lately, rejected long ago, and an orphan of a crash long ago
    junk_old, junk_new = (world.upload(MZ, b"not a bundle " + os.urandom(8)) for _ in range(2))
    for u in (junk_old, junk_new):
        assert world.ingest.process(u).value == "rejected"
    _upload_at(world, junk_old, _ago(days=40))
    _upload_at(world, junk_new, _ago(days=1))
    orphan = spool.quarantine / f"orphan-{uuid.uuid4()}"
    orphan.write_bytes(b"x")
    _touch(orphan, _ago(days=40))
    # pulled: one receipt ten days ago (leaves the outbox), one yesterday (stays)
    with world.node.session() as s:
        for u, when in ((junk_new, _ago(days=10)), (junk_old, _ago(days=1))):
            size = (mz / receipt_name(u)).stat().st_size
            assert record_pull(s, MZ, receipt_name(u), size, address="127.0.0.1", now=when)
    # the drop folder
    drop = world.node.config.path(world.node.config.drop)
    (drop / ".imported" / "sub").mkdir(parents=True)
    (drop / "sub").mkdir()
    plain = "身份证号,姓名\n330102195001010011,张三\n"
    for rel, minutes in (
        ("低保名单-old.csv", 120),
        ("低保名单-new.csv", 10),
        (".copying.tmp", 120),
        ("sub/deep.csv", 120),
        (".imported/abc-old.csv", 180),
    ):
        (drop / rel).write_text(plain, encoding="utf-8")
        _touch(drop / rel, _ago(minutes=minutes))
    shutil.copyfile(world.seal(RS), drop / "waiting.bundle")
    _touch(drop / "waiting.bundle", _ago(days=5))
    shutil.copyfile(world.seal(RS), drop / ".imported" / "def-sealed.bundle")
    _touch(drop / ".imported" / "def-sealed.bundle", _ago(days=40))
    return {
        "data": data.bundle_id,
        "data_receipt": f"spool/depts/{RS}/outbox/{data.receipt_name}",
        "old": old.bundle_id,
        "old_upload": old.id,
        "fresh": fresh.bundle_id,
        "open": open_q.bundle_id,
        "junk_old": junk_old,
        "junk_new": junk_new,
        "orphan": orphan.name,
    }


def test_a_run_purges_exactly_what_expired_and_records_it_once(world: World) -> None:
    ids = _build(world)
    before, events_before = _files(world), _events(world)
    dry = run_retention(world.node, NOW, dry_run=True)
    assert _files(world) == before and len(_events(world)) == len(events_before)
    assert dry.audit_seq is None and dry.dry_run

    report = run_retention(world.node, NOW)
    gone = before - _files(world)
    mz = f"spool/depts/{MZ}/outbox"
    expected_gone = {
        f"spool/store/{ids['data']}.bundle",
        ids["data_receipt"],
        f"spool/store/{ids['old']}.bundle",
        f"{mz}/{receipt_name(ids['old_upload'])}",
        f"{mz}/{result_name(ids['old'])}",
        f"spool/quarantine/{ids['junk_old']}",
        f"spool/quarantine/{ids['orphan']}",
        "drop/低保名单-old.csv",
        "drop/.copying.tmp",
        "drop/sub/deep.csv",
        "drop/.imported/abc-old.csv",
        "drop/.imported/def-sealed.bundle",
        # retired: leaves the outbox, stays the node's evidence
        f"{mz}/{receipt_name(ids['junk_new'])}",
    }
    assert gone == expected_gone
    assert _files(world) - before == {f"spool/sent/{MZ}/{receipt_name(ids['junk_new'])}"}
    # what stays: the open query, the lately closed one, the fresh files, waiting bundles
    after = _files(world)
    for kept in (
        f"spool/store/{ids['open']}.bundle",
        f"spool/store/{ids['fresh']}.bundle",
        f"{mz}/{result_name(ids['fresh'])}",
        f"{mz}/{result_name(ids['open'])}",
        f"spool/depts/{RS}/outbox/{relay_name(relay_id(ids['open'], 'RS-JY-01'))}",
        f"spool/quarantine/{ids['junk_new']}",
        f"{mz}/{receipt_name(ids['junk_old'])}",
        "drop/低保名单-new.csv",
        "drop/waiting.bundle",
    ):
        assert kept in after, kept
    # the dry run said exactly this
    assert dry.counts() == report.counts() and dry.bundles == report.bundles
    assert report.counts() == {
        "stored": 2,
        "outbox": 3,
        "quarantine": 2,
        "drop": 5,
        "retired": 1,
    }
    assert report.failed == [] and report.kept["open"] >= 5
    # one audit event names what went; the trail is whole and nothing in it was removed
    events = _events(world)
    assert [e.seq for e in events[: len(events_before)]] == [e.seq for e in events_before]
    [purge] = events[len(events_before) :]
    assert (purge.seq, purge.action, purge.actor) == (report.audit_seq, PURGE_ACTION, "node")
    detail = json.loads(purge.detail)
    assert detail["stored"] == sorted([ids["data"], ids["old"]])
    assert {ids["data"], ids["old"]} <= set(detail["bundles"]) and len(detail["bundles"]) == 5
    assert detail["retired"] == [f"{MZ}/{receipt_name(ids['junk_new'])}"]
    assert detail["counts"]["drop"] == 5 and "低保" not in purge.detail
    assert "330102195001010011" not in purge.detail
    with world.node.session(write=False) as s:
        assert verify_chain(s) == len(events)
    # a second run finds nothing more, and records nothing
    again = run_retention(world.node, NOW)
    assert again.changes == 0 and again.audit_seq is None and len(_events(world)) == len(events)


def test_a_run_while_another_holds_the_lock_does_nothing(world: World) -> None:
    root = world.ingest.spool.root
    fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        report = run_retention(world.node, NOW)
    finally:
        os.close(fd)
    assert report.skipped and report.changes == 0


def _item(material: Material, **kw: object) -> Item:
    fields: dict[str, object] = {"since": _ago(days=100), **kw}
    return Item(material, Path("x"), "x", **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("item", "policy", "verdict"),
    [
        # a report is valid a year: anything of a query stays 366 days, whatever evidence_days
        (_item(Material.STORED, of_query=True), RetentionConfig(evidence_days=30), Verdict.PERIOD),
        (_item(Material.STORED), RetentionConfig(evidence_days=30), Verdict.PURGE),
        (
            _item(Material.SENT, of_query=True, since=_ago(days=366)),
            RetentionConfig(evidence_days=30),
            Verdict.PURGE,
        ),
        # 0 keeps evidence for ever
        (
            _item(Material.STORED, since=_ago(days=9000)),
            RetentionConfig(evidence_days=0),
            Verdict.PERIOD,
        ),
        # open work keeps anything; the unknown is kept, never guessed at
        (_item(Material.STORED, needed=True, since=_ago(days=9000)), POLICY, Verdict.OPEN),
        (_item(Material.QUARANTINE, needed=True, since=_ago(days=9000)), POLICY, Verdict.OPEN),
        (_item(Material.STORED, since=None), POLICY, Verdict.UNKNOWN),
        # pulled: retired after pulled_outbox_days; an expired one is purged instead
        (_item(Material.OUTBOX, pulled_at=_ago(days=7)), POLICY, Verdict.RETIRE),
        (_item(Material.OUTBOX, pulled_at=_ago(days=6)), POLICY, Verdict.PERIOD),
        (
            _item(Material.OUTBOX, pulled_at=_ago(days=7), since=_ago(days=401)),
            POLICY,
            Verdict.PURGE,
        ),
        # the drop folder: plaintext by minutes, an imported sealed copy by quarantine days
        (_item(Material.DROP, sealed=False, since=_ago(minutes=60)), POLICY, Verdict.PURGE),
        (_item(Material.DROP, sealed=False, since=_ago(minutes=59)), POLICY, Verdict.PERIOD),
        (_item(Material.DROP, since=_ago(days=29)), POLICY, Verdict.PERIOD),
        (_item(Material.DROP, waiting=True, since=_ago(days=900)), POLICY, Verdict.OPEN),
    ],
)
def test_decide(item: Item, policy: RetentionConfig, verdict: Verdict) -> None:
    assert decide(item, policy, NOW) is verdict


def test_keep_retention_runs_at_once_then_every_interval_and_survives_a_failure(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs: list[dt.datetime] = []

    def run(node: object, now: dt.datetime) -> None:
        runs.append(now)
        if len(runs) == 1:
            raise OSError("disk gone")  # logged; the schedule goes on

    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:
            raise asyncio.CancelledError

    monkeypatch.setattr(retention, "run_retention", run)
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(retention.keep_retention(world.node, clock=lambda: NOW, sleep=sleep))
    assert runs == [NOW, NOW] and waits == [POLICY.interval_minutes * 60] * 2
