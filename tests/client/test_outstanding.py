"""What the department still waits for or owes, from its state alone (pure): receipts not yet
pulled, bundles never uploaded, queries pending, overdue or closed with something missing,
relays not answered; and which pulled segments closed a query not fully answered."""

from __future__ import annotations

import datetime as dt
from typing import Any

from exchange_client.outstanding import outstanding, partial_answers
from exchange_client.state import PulledItem, PushedBundle, State

TODAY = dt.date(2026, 12, 15)
Q = "3f2c8a6e-5d1b-4c1e-9a57-0c2d5e7f9b10"
R = "9a0b1c2d-0000-4000-8000-000000000003"


def _push(s: State, bid: str, kind: str = "query", **kw: Any) -> None:
    s.pushed[bid] = PushedBundle(bid, kind, f"2026-12-0{len(s.pushed) + 1}T00:00:00Z", 1, 1, "ab",
                                 **kw)  # fmt: skip


def _pulled(s: State, name: str, kind: str, fields: dict[str, object], bid: str = "x") -> None:
    s.pulled[name] = PulledItem(name, name, 1, f"2026-12-01T00:0{len(s.pulled)}:00Z", "opened",
                                kind, bid, fields=fields)  # fmt: skip


def _receipt(s: State, due: str, routing: list[tuple[str, str | None]]) -> None:
    rows = [{"resource": r, "answered_by": "provider", "due_date": d} for r, d in routing]
    _pulled(
        s,
        "rq",
        "receipt",
        {"bundle_id": Q, "details": {"query": {"due_date": due, "routing": rows}}},
    )


def test_pushes_without_a_verdict() -> None:
    s = State()
    _push(s, "a", "data", uploaded_at="2026-12-01T00:00:01Z")
    _push(s, "b", "data", exported_to="/media/usb/b.bundle")
    _push(s, "c", "recheck")
    _push(s, "d", "data", uploaded_at="t", verdict="accepted")
    items = outstanding(s, TODAY)
    assert [(i.what, i.bundle_id, i.state) for i in items] == [
        ("receipt", "a", "pending"),
        ("receipt", "b", "on removable media"),
        ("upload", "c", "not uploaded"),
    ]
    assert items[0].next == "exchange-client wait a"
    assert items[0].line() == "receipt a (data): pending; exchange-client wait a"


def test_a_query_within_its_deadline_is_pending_and_past_it_overdue() -> None:
    s = State()
    _push(s, Q, uploaded_at="t", verdict="accepted")
    _receipt(s, "2026-12-20", [("RS-JY-01", "2026-12-18"), ("RS-SY-02", "2026-12-19")])
    [item] = outstanding(s, TODAY)
    assert (item.what, item.state, item.due_date) == ("query", "pending", "2026-12-20")
    assert [r["state"] for r in item.resources] == ["pending", "pending"]
    [item] = outstanding(s, dt.date(2026, 12, 19))  # RS-JY-01's date has passed, no notice yet
    assert item.state == "overdue"
    assert {r["resource"]: r["state"] for r in item.resources} == {
        "RS-JY-01": "overdue",
        "RS-SY-02": "pending",
    }


def test_a_query_closed_with_a_resource_missing_and_an_answered_one() -> None:
    s = State()
    _push(s, Q, uploaded_at="t", verdict="accepted")
    statuses = [{"resource": "RS-JY-01", "state": "answered"},
                {"resource": "RS-SY-02", "state": "terminated", "due_date": "2026-12-10"}]  # fmt: skip
    _pulled(s, "seg1", "result", {"in_reply_to": Q, "segment": 1, "final": True,
                                  "statuses": statuses, "at": "2026-12-11"})  # fmt: skip
    [item] = outstanding(s, TODAY)
    assert item.state == "missing" and item.next is None
    assert item.resources == [
        {"resource": "RS-SY-02", "state": "terminated", "due_date": "2026-12-10"}
    ]
    assert partial_answers(s, ["seg1", "seg1", "rq"]) == [Q]
    statuses[1]["state"] = "answered"
    assert outstanding(s, TODAY) == [] and partial_answers(s, ["seg1"]) == []


def test_relays_pending_overdue_extended_answered_terminated() -> None:
    s = State()
    _pulled(s, "relay", "relay", {"resource": "RS-JY-01", "due_date": "2026-12-10"}, bid=R)
    [item] = outstanding(s, dt.date(2026, 12, 9))
    assert (item.what, item.bundle_id, item.state, item.due_date) == (
        "relay",
        R,
        "pending",
        "2026-12-10",
    )
    assert item.next == f"exchange-client respond --to-query {R} ANSWER"
    assert outstanding(s, TODAY)[0].state == "overdue"  # the date passed
    _pulled(s, "n1", "notice", {"relay_id": R, "notice": "extended", "due_date": "2026-12-20", "at": "2026-12-09T01:00:00+00:00"})  # fmt: skip
    [item] = outstanding(s, TODAY)
    assert (item.state, item.due_date) == ("pending", "2026-12-20")
    _push(s, "ans", "response", uploaded_at="t", verdict="rejected", in_reply_to=R)
    assert [i.what for i in outstanding(s, TODAY)] == ["relay"]  # a refused answer answers nothing
    _push(s, "ans2", "response", uploaded_at="t", verdict="accepted", in_reply_to=R)
    assert outstanding(s, TODAY) == []
    del s.pushed["ans2"]
    _pulled(s, "n2", "notice", {"relay_id": R, "notice": "terminated", "at": "2026-12-21T00:00:00+00:00"})  # fmt: skip
    assert outstanding(s, TODAY) == []


def test_a_suspended_query_names_the_supplement() -> None:
    s = State()
    _push(s, Q, uploaded_at="t", verdict="accepted")
    _pulled(s, "rq", "receipt", {"bundle_id": Q, "details": {"query": {"suspended": True, "unauthorized": 2, "routing": []}}})  # fmt: skip
    [item] = outstanding(s, TODAY)
    assert item.state == "suspended" and item.next is not None and "supplement" in item.next
