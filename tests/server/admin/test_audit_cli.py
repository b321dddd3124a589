"""``exchange-server audit verify`` and ``audit list`` through the real Typer app, on a trail
the pipeline wrote: each kind of tampering found and located, details masked (SQLite, and
PostgreSQL when reachable)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlmodel import col, select
from typer.testing import CliRunner, Result

from exchange_server.admin.audit_cli import LIST_SCHEMA, VERIFY_SCHEMA
from exchange_server.admin.cli import app
from exchange_server.store.audit import EventSpec, append_events
from exchange_server.store.models import AuditEvent
from tests.server.pipeline.test_workflow import MZ, A, _push_data, _push_query
from tests.server.world import World


@pytest.fixture
def world(catalog_world: World) -> World:
    _push_data(catalog_world)
    _push_data(catalog_world, sender=MZ)  # refused: E_PROVIDER
    _push_query(catalog_world)
    return catalog_world


def invoke(world: World, *args: str) -> Result:
    return CliRunner().invoke(app, ["audit", *args, "--home", str(world.node.config.home)])


def _events(world: World) -> list[AuditEvent]:
    with world.node.session(write=False) as s:
        return [e.model_copy() for e in s.exec(select(AuditEvent).order_by(col(AuditEvent.seq)))]


def _verify(world: World) -> tuple[int, dict[str, object]]:
    r = invoke(world, "verify", "--json")
    doc = json.loads(r.stdout)
    assert doc["schema"] == VERIFY_SCHEMA
    return r.exit_code, doc


def test_an_untouched_trail_verifies(world: World) -> None:
    code, doc = _verify(world)
    assert code == 0 and doc["intact"] is True and doc["problem"] is None
    assert doc["events"] == len(_events(world)) >= 5
    r = invoke(world, "verify")
    assert r.exit_code == 0 and f"audit trail intact: {doc['events']} events" in r.stdout


@pytest.mark.parametrize("field", ["action", "subject", "detail", "at"])
def test_one_field_changed_is_found_at_its_event(world: World, field: str) -> None:
    victim = _events(world)[2]
    with world.node.session() as s:
        ev = s.get(AuditEvent, victim.seq)
        assert ev is not None
        if field == "at":
            ev.at = ev.at.replace(year=ev.at.year - 1)
        else:
            setattr(ev, field, (getattr(ev, field) or "") + "x")
        s.add(ev)
    code, doc = _verify(world)
    assert code == 1 and doc["intact"] is False
    assert doc["problem"] == f"audit trail broken: event {victim.seq} was altered"
    r = invoke(world, "verify")
    assert r.exit_code == 1 and f"event {victim.seq} was altered" in r.stdout


def test_a_deleted_event_is_found(world: World) -> None:
    victim = _events(world)[3]
    with world.node.session() as s:
        ev = s.get(AuditEvent, victim.seq)
        s.delete(ev)
    code, doc = _verify(world)
    assert code == 1 and doc["problem"] == f"audit trail broken: event {victim.seq} is missing"


def test_two_events_swapped_are_found(world: World) -> None:
    """Swapping two events' contents (each keeping its own hash) breaks the links."""
    first, second = _events(world)[1:3]
    with world.node.session() as s:
        a, b = s.get(AuditEvent, first.seq), s.get(AuditEvent, second.seq)
        assert a is not None and b is not None
        for name in ("at", "actor", "action", "subject", "detail", "prev_hash", "hash"):
            va, vb = getattr(a, name), getattr(b, name)
            setattr(a, name, vb)
            setattr(b, name, va)
        s.add(a)
        s.add(b)
    code, doc = _verify(world)
    assert code == 1 and doc["problem"] == f"audit trail broken: event {first.seq} was altered"


def test_list_filters_newest_first_and_masks_personal_data(world: World) -> None:
    with world.node.session() as s:  # an event whose subject and detail quote an ID number
        note = EventSpec("node", "test.note", A, {"note": f"person {A}"})
        append_events(s, [note], now=dt.datetime.now(dt.UTC))
    r = invoke(world, "list", "--json", "--limit", "3")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["schema"] == LIST_SCHEMA
    seqs = [e["seq"] for e in doc["events"]]
    assert seqs == sorted(seqs, reverse=True) and len(seqs) == 3
    assert seqs[0] == _events(world)[-1].seq
    refused = invoke(world, "list", "--json", "--action", "bundle.rejected")
    actions = {e["action"] for e in json.loads(refused.stdout)["events"]}
    assert actions == {"bundle.rejected"}
    since = invoke(world, "list", "--json", "--since", "2999-01-01")
    assert json.loads(since.stdout)["events"] == []
    # the ID number is masked wherever it is shown; the query's names never reached the trail
    for out in (invoke(world, "list").stdout, r.stdout, invoke(world, "list", "--json").stdout):
        assert "test.note" in out
        assert A not in out and "张三" not in out and "欧阳娜娜" not in out
    assert invoke(world, "verify").exit_code == 0  # an appended event keeps the chain


def test_list_refuses_a_bad_time_in_words(world: World) -> None:
    r = invoke(world, "list", "--since", "yesterday")
    assert r.exit_code != 0
    assert "not an ISO 8601 date or time" in r.output and "Traceback" not in r.output
