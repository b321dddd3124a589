"""The CRL's freshness as the node reports, watches and enforces it (exchange_server.crl)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import select

from exchange_server.crl import CrlWatch, crl_status
from exchange_server.store.models import AuditEvent
from tests.conftest import CAFixture
from tests.server.world import World, build_world


@pytest.fixture
def world(tmp_path: Path, test_ca: CAFixture) -> Iterator[World]:
    w = build_world(tmp_path, test_ca)  # its CRL is signed now: the tests' clock starts after
    yield w
    test_ca.ca.crl()  # the CA directory's crl.pem current again for the other tests


def _install(world: World, test_ca: CAFixture, *, signed: dt.datetime, days: int) -> None:
    pem = test_ca.ca.crl(now=signed, days=days)
    path = world.node.config.path(world.node.config.crl)
    path.write_bytes(pem)


def _audit(world: World) -> list[str]:
    with world.node.session(write=False) as s:
        return [e.action for e in s.exec(select(AuditEvent)) if e.action.startswith("crl.")]


def test_status_says_until_when_and_fails_closed(world: World, test_ca: CAFixture) -> None:
    NOW = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    status = crl_status(world.node, NOW)
    assert status.current and status.next_update is not None and status.next_update > NOW
    assert f"{status.next_update:%Y-%m-%d}" in status.message
    _install(world, test_ca, signed=NOW - dt.timedelta(days=30), days=1)
    stale = crl_status(world.node, NOW)
    assert (stale.current, stale.code) == (False, "E_CRL_STALE")
    world.node.config.path(world.node.config.crl).unlink()
    assert crl_status(world.node, NOW).code == "E_CRL_MISSING"


def test_watch_reports_each_change_once(world: World, test_ca: CAFixture) -> None:
    NOW = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    watch = CrlWatch(world.node)
    assert watch.check(NOW).current and _audit(world) == []  # current at start: nothing
    _install(world, test_ca, signed=NOW - dt.timedelta(days=30), days=1)
    assert not watch.check(NOW).current
    assert not watch.check(NOW + dt.timedelta(minutes=1)).current  # still stale: said once
    assert _audit(world) == ["crl.stale"]
    _install(world, test_ca, signed=NOW, days=7)
    assert watch.check(NOW).current
    assert _audit(world) == ["crl.stale", "crl.fresh"]
    # time alone makes a CRL stale: the watch notices without any file change
    assert not watch.check(NOW + dt.timedelta(days=8)).current
    assert _audit(world) == ["crl.stale", "crl.fresh", "crl.stale"]
