"""Suspended queries (浙江 六(二)): persons without authorization suspend a query; a supplement
from the requester resumes it; a query suspended too long is closed.

Dates are counted by hand from the State Council's 2026 schedule (National Day 1–7 Oct off,
Saturday 10 Oct worked), not by the library under test.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlmodel import select

from exchange_server.config import DeadlineConfig
from exchange_server.pipeline.deadlines import DeadlineKeeper
from exchange_server.pipeline.queries import relay_id, result_name
from exchange_server.pipeline.workflow import Workflow
from exchange_server.store.models import AuditEvent, Query, QueryResource, Upload
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
from tests.server.pipeline.test_workflow import MZ, PERSONS, RS, A, B, C, _receipt, _upload
from tests.server.world import World

UNAUTHORIZED = PERSONS.replace(",SQ-3", ",")  # C has no authorization reference
SUPPLEMENT = f"身份证号,姓名,授权编号\n{C},李四,SQ-3\n"


@pytest.fixture
def world(catalog_world: World) -> World:
    """The test world with the example catalog published and the Workflow as router."""
    return catalog_world


def _suspended(world: World) -> Upload:
    up = _query(world, RELAYED_ONLY, UNAUTHORIZED)
    assert up.state == "routed", up.reason_detail
    return up


def _supplement(
    world: World,
    qid: str,
    body: str = SUPPLEMENT,
    *,
    sender: str = MZ,
    at: dt.datetime | None = None,
) -> Upload:
    path = world.seal(
        sender, body.encode(), kind="supplement", fields={"in_reply_to": qid}, member="persons.csv"
    )
    upload_id = world.upload(sender, path)
    if at is not None:
        _received_at(world, upload_id, at)
    world.ingest.process(upload_id)
    return _upload(world, upload_id)


def _query_state(world: World, qid: str) -> str:
    with world.node.session(write=False) as s:
        q = s.get(Query, qid)
        assert q is not None
        return q.state


def test_missing_authorization_suspends_the_query_instead_of_refusing_it(world: World) -> None:
    up = _suspended(world)
    qid = up.bundle_id
    assert qid is not None
    receipt = _receipt(world, up, MZ)
    assert receipt["verdict"] == "accepted"
    details = receipt["details"]
    assert isinstance(details, dict)
    assert (details["query"]["suspended"], details["query"]["unauthorized"]) == (True, 1)
    assert details["query"]["routing"][0]["due_date"] is None  # counted from the supplement
    assert _query_state(world, qid) == "suspended"
    assert not any(n.startswith("relay-") for n in _outbox(world, RS))  # nothing relayed
    assert C not in json.dumps(receipt, ensure_ascii=False)


def test_supplement_resumes_the_query_with_deadlines_from_its_arrival(world: World) -> None:
    qid = _suspended(world).bundle_id
    assert qid is not None
    # the supplement arrives on Friday 9 Oct 2026: Sat 10 (worked), Mon 12 … Thu 15 Oct
    sup = _supplement(world, qid, at=dt.datetime(2026, 10, 9, 10, 0, tzinfo=SHANGHAI))
    assert sup.state == "done", sup.reason_detail
    details = _receipt(world, sup, MZ)["details"]
    assert isinstance(details, dict) and details["supplement"]["persons"] == 1
    assert _query_state(world, qid) == "open"
    rid = relay_id(qid, "RS-JY-01")
    fields, out = _open(world, RS, f"relay-{rid}.bundle")
    assert fields["due_date"] == "2026-10-15"
    relayed = (out / "persons.csv").read_text("utf-8")
    assert "SQ-3" in relayed and A in relayed and B in relayed
    with world.node.session(write=False) as s:
        assert [e.action for e in s.exec(select(AuditEvent).where(
            AuditEvent.action == "query.resumed"))] == ["query.resumed"]  # fmt: skip
    # and the query runs its course
    assert _answer(world, rid, GOOD).state == "done"
    fields, _ = _open(world, MZ, result_name(qid, 1))
    assert fields["final"] is True


@pytest.mark.parametrize(
    ("body", "sender", "code"),
    [
        (SUPPLEMENT, RS, "E_SUPPLEMENT"),  # not the requester
        ("身份证号,姓名,授权编号\n110101199003070038,王五,SQ-9\n", MZ, "E_SUPPLEMENT"),  # stranger
        (f"身份证号,姓名,授权编号\n{A},张三,SQ-1\n", MZ, "E_SUPPLEMENT"),  # C still missing
        (f"身份证号,姓名,授权编号\n{C},李四,\n", MZ, "E_AUTHORIZATION"),  # still none
        (f"身份证号,姓名\n{C},李四\n", MZ, "E_SCHEMA"),
    ],
    ids=["not-requester", "stranger", "incomplete", "no-reference", "no-column"],
)
def test_bad_supplement_is_refused_and_the_query_stays_suspended(
    world: World, body: str, sender: str, code: str
) -> None:
    qid = _suspended(world).bundle_id
    assert qid is not None
    bad = _supplement(world, qid, body, sender=sender)
    assert (bad.state, bad.reason_code) == ("rejected", code)
    receipt = json.dumps(_receipt(world, bad, sender), ensure_ascii=False)
    assert "110101199003070038" not in receipt and C not in receipt
    assert _query_state(world, qid) == "suspended"
    assert not any(n.startswith("relay-") for n in _outbox(world, RS))
    # a good supplement still resumes it
    assert _supplement(world, qid).state == "done"
    assert _query_state(world, qid) == "open"


def test_supplement_for_a_query_that_is_not_suspended_is_refused(world: World) -> None:
    qid = _query(world, RELAYED_ONLY).bundle_id
    assert qid is not None
    up = _supplement(world, qid)
    assert (up.state, up.reason_code) == ("rejected", "E_SUPPLEMENT")


def test_query_suspended_too_long_is_closed_with_a_final_segment(world: World) -> None:
    up = _suspended(world)
    qid = up.bundle_id
    assert qid is not None
    workflow = world.ingest.router
    assert isinstance(workflow, Workflow)
    # received Mon 28 Sep 2026; 10 working days: 29, 30 Sep, 8, 9, 10, 12, 13, 14, 15, 16 Oct
    end = dt.datetime(2026, 10, 16, 16, 0, tzinfo=dt.UTC)
    at = [end - dt.timedelta(seconds=1)]
    keeper = DeadlineKeeper(
        workflow.book, DeadlineConfig(suspend_limit_days=10), clock=lambda: at[0]
    )
    assert keeper.tick().expired == 0 and _query_state(world, qid) == "suspended"
    at[0] = end
    assert keeper.tick().expired == 1
    assert _query_state(world, qid) == "closed"
    fields, out = _open(world, MZ, result_name(qid, 1))
    assert (fields["final"], fields["status"]) == (True, "partial")
    report = json.loads((out / "report.json").read_text("utf-8"))
    [entry] = report["resources"]
    assert entry["state"] == "terminated" and "authorizations" in entry["note"]
    assert _upload(world, up.id).state == "done"
    assert keeper.tick().expired == 0  # once
    with world.node.session(write=False) as s:
        rows = s.exec(select(QueryResource).where(QueryResource.query_id == qid)).all()
        assert [r.state for r in rows] == ["terminated"]
    late = _supplement(world, qid)
    assert (late.state, late.reason_code) == ("rejected", "E_SUPPLEMENT")
    assert _state(world, qid) == {"RS-JY-01": "terminated"}


def test_supplement_reviewed_again_after_a_crash_keeps_its_outcome(world: World) -> None:
    qid = _suspended(world).bundle_id
    assert qid is not None
    sup = _supplement(world, qid)
    assert sup.state == "done"
    mz = _outbox(world, MZ)
    # a crash after the query resumed, before the supplement was recorded done
    with world.node.session() as s:
        row = s.get(Upload, sup.id)
        assert row is not None
        row.state = "accepted"
        s.add(row)
    assert world.ingest.process(sup.id).value == "done"
    assert _upload(world, sup.id).reason_code is None
    assert _outbox(world, MZ) == mz  # no second receipt
    assert _query_state(world, qid) == "open"
