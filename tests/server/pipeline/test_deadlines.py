"""Deadlines of relayed queries: overdue notices, escalation, extension, termination and a
deadline the calendar could not compute yet — with the clock injected.

Queries are received on Monday 28 Sep 2026, 10:00 in Shanghai. Dates below are counted by hand
from the State Council's 2026 schedule (National Day 1–7 Oct off, Saturday 10 Oct worked), not
by the library under test: RS-JY-01 (5 working days) is due Saturday 10 Oct 2026, i.e. until
2026-10-10T16:00Z.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pytest
from sqlmodel import select

from exchange_common.errors import InputError
from exchange_server.config import DeadlineConfig
from exchange_server.pipeline.deadlines import DeadlineKeeper
from exchange_server.pipeline.queries import relay_id, result_name
from exchange_server.pipeline.workflow import Workflow
from exchange_server.store.audit import verify_chain
from exchange_server.store.calendar import import_years
from exchange_server.store.models import AuditEvent, Query, Upload
from tests.common.calendargen import FICTIONAL_2027
from tests.server.pipeline.test_relays import (
    GOOD,
    RELAYED_ONLY,
    SHANGHAI,
    _answer,
    _open,
    _outbox,
    _query,
    _received_at,
    _state,
)
from tests.server.pipeline.test_workflow import MZ, PERSONS, RS, _push_data, _receipt, _upload
from tests.server.world import World

UTC = dt.UTC
DUE_END = dt.datetime(2026, 10, 10, 16, 0, tzinfo=UTC)  # 11 Oct 00:00 in Shanghai
#: escalate_after_days = 2: Mon 12 and Tue 13 Oct are the two further working days.
ESCALATE_AT = dt.datetime(2026, 10, 13, 16, 0, tzinfo=UTC)
RELAYED = RELAYED_ONLY


@pytest.fixture
def world(catalog_world: World) -> World:
    """The test world with the example catalog published and the Workflow as router."""
    return catalog_world


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, at: dt.datetime) -> None:
        self.at = at

    def __call__(self) -> dt.datetime:
        return self.at


def _keeper(world: World, clock: Callable[[], dt.datetime]) -> DeadlineKeeper:
    workflow = world.ingest.router
    assert isinstance(workflow, Workflow)
    return DeadlineKeeper(workflow.book, DeadlineConfig(escalate_after_days=2), clock=clock)


def _events(world: World, action: str) -> list[dict[str, Any]]:
    with world.node.session(write=False) as s:
        rows = s.exec(select(AuditEvent).where(AuditEvent.action == action)).all()
        return [json.loads(e.detail) | {"actor": e.actor} for e in rows]


def _notices(world: World, dept: str) -> set[str]:
    return {n for n in _outbox(world, dept) if n.startswith("notice-")}


def test_deadline_passes_at_the_end_of_the_due_day_in_shanghai(world: World) -> None:
    qid = _query(world, RELAYED).bundle_id
    assert qid is not None
    clock = Clock(DUE_END - dt.timedelta(seconds=1))  # 23:59:59 on 10 Oct in Shanghai
    keeper = _keeper(world, clock)
    assert keeper.tick().overdue == 0
    assert _state(world, qid) == {"RS-JY-01": "pending"} and not _notices(world, RS)
    clock.at = DUE_END
    report = keeper.tick()
    assert (report.overdue, report.notices) == (1, 2)
    assert _state(world, qid) == {"RS-JY-01": "overdue"}
    rid = relay_id(qid, "RS-JY-01")
    # the provider's notice names its relay, never the requester; the requester's its query
    [to_rs] = _notices(world, RS)
    assert to_rs == f"notice-overdue-{rid}-20261010.bundle"
    fields, out = _open(world, RS, to_rs)
    assert (fields["notice"], fields["relay_id"], fields["due_date"]) == (
        "overdue",
        rid,
        "2026-10-10",
    )
    assert "query_id" not in fields and MZ not in json.dumps(fields)
    assert json.loads((out / "notice.json").read_text("utf-8"))["notice"] == "overdue"
    [to_mz] = _notices(world, MZ)
    fields, _ = _open(world, MZ, to_mz)
    assert (fields["query_id"], fields["resource"]) == (qid, "RS-JY-01")
    # exactly once: a second check changes nothing and sends nothing
    assert keeper.tick().overdue == 0
    assert (_notices(world, RS), _notices(world, MZ)) == ({to_rs}, {to_mz})
    assert len(_events(world, "deadline.overdue")) == 1


def test_whole_verification_deadline_is_recorded_once_when_the_query_is_still_open(
    world: World,
) -> None:
    qid = _query(world, RELAYED).bundle_id
    # 10 working days from Mon 28 Sep 2026: due Fri 16 Oct, until 2026-10-16T16:00Z
    end = dt.datetime(2026, 10, 16, 16, 0, tzinfo=UTC)
    clock = Clock(end - dt.timedelta(seconds=1))
    keeper = _keeper(world, clock)
    assert keeper.tick().queries_overdue == 0
    clock.at = end
    assert keeper.tick().queries_overdue == 1
    assert keeper.tick().queries_overdue == 0
    [event] = _events(world, "query.overdue")
    assert event["due_date"] == "2026-10-16"
    with world.node.session(write=False) as s:
        q = s.get(Query, qid)
        assert q is not None and q.overdue_at is not None and q.state == "open"


def test_overdue_is_escalated_after_further_working_days(world: World) -> None:
    qid = _query(world, RELAYED).bundle_id
    clock = Clock(DUE_END)
    keeper = _keeper(world, clock)
    keeper.tick()
    clock.at = ESCALATE_AT - dt.timedelta(seconds=1)
    assert keeper.tick().escalated == 0
    clock.at = ESCALATE_AT
    assert keeper.tick().escalated == 1
    assert keeper.tick().escalated == 0
    [event] = _events(world, "deadline.escalated")
    assert (event["resource"], event["provider"]) == ("RS-JY-01", RS)
    assert qid is not None and _state(world, qid) == {"RS-JY-01": "overdue"}


def test_a_late_answer_is_taken_and_closes_the_query(world: World) -> None:
    qid = _query(world, RELAYED).bundle_id
    assert qid is not None
    _keeper(world, Clock(DUE_END)).tick()
    late = _answer(world, relay_id(qid, "RS-JY-01"), GOOD)
    assert late.state == "done", late.reason_detail
    details = _receipt(world, late, RS)["details"]
    assert isinstance(details, dict) and details["answer"]["late"] is True
    fields, _ = _open(world, MZ, result_name(qid, 1))
    assert (fields["final"], fields["status"]) == (True, "answered")
    assert _state(world, qid) == {"RS-JY-01": "answered"}


def test_extension_moves_the_deadline_and_is_notified(world: World) -> None:
    qid = _query(world, RELAYED).bundle_id
    assert qid is not None
    clock = Clock(DUE_END)
    keeper = _keeper(world, clock)
    keeper.tick()  # overdue first: an extension may come late
    row = keeper.extend(qid, "RS-JY-01", 3, reason="系统升级停机", by="张科长")
    # from Sat 10 Oct: Mon 12, Tue 13, Wed 14 Oct
    assert (row.state, row.due_date) == ("extended", dt.date(2026, 10, 14))
    rid = relay_id(qid, "RS-JY-01")
    assert f"notice-extended-{rid}-20261014.bundle" in _notices(world, RS)
    fields, _ = _open(world, MZ, f"notice-extended-{qid}-RS-JY-01-20261014.bundle")
    assert (fields["due_date"], fields["previous_due_date"]) == ("2026-10-14", "2026-10-10")
    assert fields["reason"] == "系统升级停机"
    [event] = _events(world, "deadline.extended")
    assert (event["actor"], event["days"], event["reason"]) == ("张科长", 3, "系统升级停机")
    # the new deadline is enforced in turn, with a notice of its own
    clock.at = dt.datetime(2026, 10, 14, 15, 59, tzinfo=UTC)
    assert keeper.tick().overdue == 0
    clock.at = dt.datetime(2026, 10, 14, 16, 0, tzinfo=UTC)
    assert keeper.tick().overdue == 1
    assert f"notice-overdue-{rid}-20261014.bundle" in _notices(world, RS)


def test_termination_ends_the_resource_with_a_final_segment(world: World) -> None:
    _push_data(world)
    up = _query(world)  # RS-SI-01 hosted (segment 1) and RS-JY-01 relayed
    qid = up.bundle_id
    assert qid is not None
    keeper = _keeper(world, Clock(DUE_END))
    segment = keeper.terminate(qid, "RS-JY-01", reason="不可抗力：机房断电", by="张科长")
    assert (segment.seq, segment.final) == (2, True)
    fields, out = _open(world, MZ, result_name(qid, 2))
    assert (fields["final"], fields["status"]) == (True, "partial")
    report = json.loads((out / "report.json").read_text("utf-8"))
    states = {r["resource"]: r["state"] for r in report["resources"]}
    assert states == {"RS-SI-01": "answered", "RS-JY-01": "terminated"}
    rid = relay_id(qid, "RS-JY-01")
    assert _notices(world, RS) == {f"notice-terminated-{rid}-end.bundle"}
    assert _upload(world, up.id).state == "done"
    with world.node.session(write=False) as s:
        q = s.get(Query, qid)
        assert q is not None and q.state == "closed"
        verify_chain(s)
    late = _answer(world, rid, GOOD)
    assert (late.state, late.reason_code) == ("rejected", "E_RELAY_CLOSED")


@pytest.mark.parametrize(
    ("resource", "days", "reason", "by", "code"),
    [
        ("RS-SI-01", 3, "x", "y", "E_QUERY_STATE"),  # hosted: answered at once
        ("GA-CL-01", 3, "x", "y", "E_NOT_FOUND"),  # not in this query
        ("RS-JY-01", 0, "x", "y", "E_INPUT"),
        ("RS-JY-01", 61, "x", "y", "E_INPUT"),
        ("RS-JY-01", 3, " ", "y", "E_INPUT"),
        ("RS-JY-01", 3, "x", "", "E_INPUT"),
    ],
)
def test_bad_extension_is_refused_and_changes_nothing(
    world: World, resource: str, days: int, reason: str, by: str, code: str
) -> None:
    _push_data(world)
    qid = _query(world).bundle_id
    assert qid is not None
    keeper = _keeper(world, Clock(DUE_END - dt.timedelta(days=1)))
    with pytest.raises(InputError) as e:
        keeper.extend(qid, resource, days, reason=reason, by=by)
    assert e.value.code == code
    assert _state(world, qid) == {"RS-SI-01": "answered", "RS-JY-01": "pending"}
    assert not _events(world, "deadline.extended") and not _notices(world, RS)


def test_deadline_in_a_year_without_data_waits_for_the_calendar(world: World) -> None:
    # received Mon 28 Dec 2026: 5 working days reach into 2027, which the package lacks
    path = world.seal(MZ, PERSONS.encode(), kind="query", fields=RELAYED, member="persons.csv")
    upload_id = world.upload(MZ, path)
    _received_at(world, upload_id, dt.datetime(2026, 12, 28, 10, 0, tzinfo=SHANGHAI))
    world.ingest.process(upload_id)
    up = _upload(world, upload_id)
    assert up.state == "routed", up.reason_detail
    qid = up.bundle_id
    assert qid is not None
    details = _receipt(world, up, MZ)["details"]
    assert isinstance(details, dict)
    assert details["query"]["routing"][0]["due_date"] is None  # never a guess
    rfields, _ = _open(world, RS, f"relay-{relay_id(qid, 'RS-JY-01')}.bundle")
    assert rfields["due_date"] is None
    clock = Clock(dt.datetime(2027, 1, 20, tzinfo=UTC))
    keeper = _keeper(world, clock)
    report = keeper.tick()
    assert report.calendar_gaps == [2027] and report.overdue == 0
    with world.node.session() as s:  # the operator imports 2027 (fictional test data)
        import_years(s, {2027: FICTIONAL_2027}, actor="test", now=dt.datetime.now(UTC))
    clock.at = dt.datetime(2026, 12, 30, tzinfo=UTC)
    report = keeper.tick()
    assert (report.deadlines_set, report.calendar_gaps) == (1, [])
    # 29, 30, 31 Dec; 1–4 Jan off (test data); Tue 5, Wed 6 Jan 2027
    fields, _ = _open(world, RS, f"notice-deadline-{relay_id(qid, 'RS-JY-01')}-20270106.bundle")
    assert (fields["notice"], fields["due_date"]) == ("deadline", "2027-01-06")
    with world.node.session(write=False) as s:
        q = s.get(Query, qid)
        assert q is not None and q.due_date is not None  # the whole query's too
    assert _state(world, qid) == {"RS-JY-01": "pending"}


def test_undelivered_notice_is_delivered_by_the_next_check(world: World) -> None:
    qid = _query(world, RELAYED).bundle_id
    keeper = _keeper(world, Clock(DUE_END))
    # a crash after the notice was recorded, before it was written: record, do not deliver
    deliver = keeper.deliver_notices
    keeper.deliver_notices = lambda: 0  # type: ignore[method-assign]
    keeper.tick()
    assert not _notices(world, RS)
    keeper.deliver_notices = deliver  # type: ignore[method-assign]
    assert keeper.tick().notices == 2
    assert len(_notices(world, RS)) == 1 and len(_notices(world, MZ)) == 1
    assert qid is not None
    with world.node.session(write=False) as s:
        assert s.get(Upload, _query_upload(world, qid)) is not None


def _query_upload(world: World, qid: str) -> str:
    with world.node.session(write=False) as s:
        q = s.get(Query, qid)
        assert q is not None
        return q.upload_id
