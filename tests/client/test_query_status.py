"""``exchange-client status QUERY_ID``: what the requester sees of a query, from the receipt,
the result segments and the notices it pulled (pure: built from a state, no node)."""

from __future__ import annotations

import pytest

from exchange_client.outstanding import query_status
from exchange_client.state import PulledItem, PushedBundle, State
from exchange_common.errors import InputError

Q = "3f2c8a6e-5d1b-4c1e-9a57-0c2d5e7f9b10"


def _state(verdict: str = "accepted") -> State:
    s = State()
    s.pushed[Q] = PushedBundle(Q, "query", "2026-09-28T02:00:00Z", 1, 10, "ab", verdict=verdict)
    return s


def _pulled(s: State, name: str, kind: str, fields: dict[str, object]) -> None:
    s.pulled[name] = PulledItem(name, name, 1, "2026-09-28T03:00:00Z", "opened", kind, name,
                                fields=fields)  # fmt: skip


def _receipt(s: State, **query: object) -> None:
    routing = [
        {"resource": "RS-SI-01", "answered_by": "node", "due_date": None},
        {"resource": "RS-JY-01", "answered_by": "provider", "due_date": "2026-10-10"},
    ]
    _pulled(
        s, "r", "receipt", {"bundle_id": Q, "details": {"query": {"routing": routing, **query}}}
    )


def _segment(s: State, n: int, final: bool, states: dict[str, str], at: str) -> None:
    statuses = [{"resource": r, "state": st, "due_date": "2026-10-10"} for r, st in states.items()]
    _pulled(s, f"seg{n}", "result",
            {"in_reply_to": Q, "segment": n, "final": final, "statuses": statuses, "at": at})  # fmt: skip


def test_before_any_segment_the_receipt_gives_routing_and_pending() -> None:
    s = _state()
    _receipt(s, due_date="2026-10-16")
    info = query_status(s, Q)
    assert info["state"] == "open" and info["due_date"] == "2026-10-16"
    assert info["waiting"] == ["RS-SI-01", "RS-JY-01"]


def test_segments_then_a_newer_notice_say_overdue_and_never_plain_success() -> None:
    s = _state()
    _receipt(s)
    _segment(
        s, 1, False, {"RS-SI-01": "answered", "RS-JY-01": "pending"}, "2026-09-28T02:01:00+00:00"
    )
    older = {"query_id": Q, "resource": "RS-JY-01", "notice": "extended", "due_date": "2026-09-01",
             "at": "2026-09-28T02:00:30+00:00"}  # fmt: skip
    _pulled(s, "n0", "notice", older)  # before the segment: already reflected there
    info = query_status(s, Q)
    assert info["state"] == "open" and info["segments"] == [1]
    assert {r["resource"]: r["state"] for r in info["resources"]}["RS-JY-01"] == "pending"
    _pulled(s, "n1", "notice", {"query_id": Q, "resource": "RS-JY-01", "notice": "overdue",
                                "due_date": "2026-10-10", "at": "2026-10-10T16:00:00+00:00"})  # fmt: skip
    info = query_status(s, Q)
    assert {r["resource"]: r["state"] for r in info["resources"]}["RS-JY-01"] == "overdue"
    assert info["waiting"] == ["RS-JY-01"] and info["state"] == "open"


def test_a_final_segment_with_a_terminated_resource_is_not_answered() -> None:
    s = _state()
    _segment(
        s, 2, True, {"RS-SI-01": "answered", "RS-JY-01": "terminated"}, "2026-10-12T00:00:00+00:00"
    )
    _segment(
        s, 1, False, {"RS-SI-01": "answered", "RS-JY-01": "pending"}, "2026-09-28T02:01:00+00:00"
    )
    info = query_status(s, Q)
    assert info["segments"] == [1, 2]
    assert info["state"] == "closed, not fully answered"


def test_a_suspended_query_says_what_to_send() -> None:
    s = _state()
    _receipt(s, suspended=True, unauthorized=2)
    info = query_status(s, Q)
    assert info["state"].startswith("suspended: 2 person(s)") and "supplement" in info["state"]
    s.pushed["sup"] = PushedBundle("sup", "supplement", "t", 1, 1, "cd", verdict="accepted",
                                   in_reply_to=Q)  # fmt: skip
    assert query_status(s, Q)["state"] == "open"


@pytest.mark.parametrize("verdict", ["rejected", "waiting"])
def test_a_query_not_accepted_shows_its_verdict(verdict: str) -> None:
    assert query_status(_state(verdict), Q)["state"] == verdict


def test_an_unknown_query_is_named_as_not_found() -> None:
    with pytest.raises(InputError) as e:
        query_status(State(), Q)
    assert e.value.code == "E_NOT_FOUND"
