"""Where the bundles of a client directory stand, from what it recorded locally (pure).

Built only from the state file (:mod:`exchange_client.state`): the receipts, result segments and
notices pulled so far. Nothing is asked of the node, so what this says is as fresh as the last
``pull``. :func:`query_status` tells one query; :func:`outstanding` lists what the department
is still waiting for or owes: receipts not yet pulled, bundles never uploaded, queries with
resources pending, overdue or missing, relays not yet answered. A date passed (in China) counts
as overdue even before the node's notice arrives.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from exchange_client.state import WAITING, PulledItem, PushedBundle, State
from exchange_common.errors import InputError

__all__ = ["PARTIAL", "Outstanding", "outstanding", "partial_answers", "query_status"]

#: ``query_status`` state of a query closed with resources unanswered (a partial answer).
PARTIAL = "closed, not fully answered"


def query_status(state: State, query_id: str) -> dict[str, Any]:
    """Where a query pushed from this directory stands, from what was pulled for it.

    The newest result segment's states win; before any segment, the receipt's routing (every
    resource pending). Raises InputError ``E_NOT_FOUND`` for a query this directory did not push.
    """
    pushed = state.pushed.get(query_id)
    if pushed is None or pushed.kind != "query":
        raise InputError(f"no query {query_id} was pushed from this directory", code="E_NOT_FOUND")
    segments = sorted(
        (
            p
            for p in state.pulled.values()
            if p.kind == "result" and (p.fields or {}).get("in_reply_to") == query_id
        ),
        key=lambda p: int((p.fields or {}).get("segment") or 0),
    )
    resources: list[dict[str, Any]] = []
    due_date = None
    suspended = 0
    resumed = any(
        r.kind == "supplement" and r.verdict == "accepted" and r.in_reply_to == query_id
        for r in state.pushed.values()
    )
    final = False
    if segments:
        last = segments[-1].fields or {}
        resources = list(last.get("statuses") or [])
        due_date, final = last.get("due_date"), bool(last.get("final"))
    else:
        for p in state.pulled.values():
            f = p.fields or {}
            if p.kind == "receipt" and f.get("bundle_id") == query_id:
                q = (f.get("details") or {}).get("query") or {}
                due_date = q.get("due_date")
                suspended = int(q.get("unauthorized") or 0)
                resources = [r | {"state": "pending"} for r in q.get("routing") or []]
    # notices newer than the last segment say what changed since (overdue, extended, …)
    since = str((segments[-1].fields or {}).get("at") or "") if segments else ""
    notices = sorted(
        (
            p.fields or {}
            for p in state.pulled.values()
            if p.kind == "notice" and (p.fields or {}).get("query_id") == query_id
        ),
        key=lambda f: str(f.get("at") or ""),
    )
    for f in notices:
        if str(f.get("at") or "") <= since:
            continue
        for r in resources:
            if r.get("resource") == f.get("resource") and r.get("state") in _WAITING:
                if f.get("notice") != "deadline":  # a deadline set late changes only the date
                    r["state"] = f.get("notice")
                if f.get("due_date"):
                    r["due_date"] = f["due_date"]
    waiting = [r["resource"] for r in resources if r.get("state") in _WAITING]
    if pushed.verdict != "accepted":
        overall = pushed.verdict
    elif suspended and not segments and not resumed:
        overall = (
            f"suspended: {suspended} person(s) lack an authorization reference; send them with "
            f"`exchange-client push --kind supplement --field in_reply_to={query_id}`"
        )
    elif final:
        answered = all(r.get("state") == "answered" for r in resources)
        overall = "answered" if answered else PARTIAL
    else:
        overall = "open" if resources else "accepted, no answer yet"
    return {
        "query": query_id,
        "state": overall,
        "due_date": due_date,
        "segments": [int((p.fields or {}).get("segment") or 0) for p in segments],
        "waiting": waiting,
        "resources": resources,
    }


_WAITING = ("pending", "extended", "overdue")


@dataclass(frozen=True)
class Outstanding:
    """One thing the department waits for or owes. No personal data: ids, codes, dates."""

    #: ``receipt`` (none pulled yet), ``upload`` (sealed, never uploaded), ``query``, ``relay``.
    what: str
    bundle_id: str
    #: ``pending``, ``overdue``, ``missing`` (closed without it), ``suspended``,
    #: ``not uploaded`` or ``on removable media``.
    state: str
    kind: str | None = None
    due_date: str | None = None
    #: The resources not answered (of a query) or asked (of a relay): resource, state, due date.
    resources: list[dict[str, Any]] = field(default_factory=list)
    #: What moves it on.
    next: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON form for ``--json`` output."""
        return asdict(self)

    def line(self) -> str:
        """One line for the screen: what, the whole id, its state, the resources, next step."""
        due = f", due {self.due_date}" if self.due_date else ""
        kind = f" ({self.kind})" if self.what in ("receipt", "upload") else ""
        parts = [f"{self.what} {self.bundle_id}{kind}: {self.state}{due}"]
        if self.resources:
            parts.append(", ".join(self._resource_text(r) for r in self.resources))
        if self.next:
            parts.append(self.next)
        return "; ".join(parts)

    def _resource_text(self, r: dict[str, Any]) -> str:
        """A resource with its state and due date where they differ from the item's own."""
        state = f" {r.get('state')}" if r.get("state") != self.state else ""
        due = r.get("due_date")
        when = f" (due {due})" if due and due != self.due_date else ""
        return f"{r.get('resource')}{state}{when}"


def _overdue(due: object, today: dt.date) -> bool:
    """A due date (``YYYY-MM-DD``, Asia/Shanghai) before ``today`` has passed."""
    return isinstance(due, str) and bool(due) and due < today.isoformat()


def _push_item(rec: PushedBundle) -> Outstanding | None:
    """A push without a verdict: its receipt pending, or the bundle never reached the node."""
    if rec.verdict != WAITING:
        return None
    if rec.uploaded_at:
        nxt = f"exchange-client wait {rec.bundle_id}"
        return Outstanding("receipt", rec.bundle_id, "pending", rec.kind, next=nxt)
    if rec.exported_to:
        nxt = "carry it to the node's drop folder, then import the receipt"
        return Outstanding("receipt", rec.bundle_id, "on removable media", rec.kind, next=nxt)
    nxt = f"it never reached the node: exchange-client resend {rec.bundle_id}"
    return Outstanding("upload", rec.bundle_id, "not uploaded", rec.kind, next=nxt)


def _query_item(state: State, rec: PushedBundle, today: dt.date) -> Outstanding | None:
    """An accepted query not fully answered: pending, overdue, suspended or closed missing."""
    info = query_status(state, rec.bundle_id)
    if info["state"] == "answered":
        return None
    due = info["due_date"]
    if info["state"].startswith("suspended"):
        nxt = info["state"].split("; ", 1)[-1]
        return Outstanding("query", rec.bundle_id, "suspended", rec.kind, due, next=nxt)
    closed = info["state"] == PARTIAL
    unanswered = []
    for r in info["resources"]:
        st = r.get("state")
        if st == "answered":
            continue
        if not closed and st in _WAITING and _overdue(r.get("due_date"), today):
            st = "overdue"
        unanswered.append(
            {"resource": r.get("resource"), "state": st, "due_date": r.get("due_date")}
        )
    if closed:
        return Outstanding("query", rec.bundle_id, "missing", rec.kind, due, unanswered)
    late = any(r["state"] == "overdue" for r in unanswered) or _overdue(due, today)
    return Outstanding(
        "query", rec.bundle_id, "overdue" if late else "pending", rec.kind, due, unanswered
    )


def _relay_item(state: State, relay: PulledItem, today: dt.date) -> Outstanding | None:
    """A relay this department has not answered (no accepted answer, none awaiting its
    receipt, not terminated), with its deadline as the latest notice moved it."""
    rid = relay.bundle_id or ""
    answers = [r for r in state.pushed.values() if r.kind == "response" and r.in_reply_to == rid]
    if any(r.verdict in ("accepted", WAITING) for r in answers):
        return None  # answered, or an answer is on its way (its receipt is listed then)
    fields = relay.fields or {}
    due = fields.get("due_date")
    last = None
    notices = [
        p.fields or {}
        for p in state.pulled.values()
        if p.kind == "notice" and (p.fields or {}).get("relay_id") == rid
    ]
    for f in sorted(notices, key=lambda f: str(f.get("at") or "")):
        last = f.get("notice")
        if f.get("due_date") and last in ("extended", "deadline"):
            due = f["due_date"]
    if last == "terminated":
        return None
    due = due if isinstance(due, str) else None
    st = "overdue" if last == "overdue" or _overdue(due, today) else "pending"
    asked = [{"resource": fields.get("resource"), "state": st, "due_date": due}]
    nxt = f"exchange-client respond --to-query {rid} ANSWER"
    return Outstanding("relay", rid, st, "relay", due, asked, nxt)


def _about(state: State) -> Callable[[str], State]:
    """For a bundle id, the part of ``state`` that speaks of it: the push itself and the pushes
    answering it (``in_reply_to``), the pulled bundle itself and the receipts, segments and
    notices that name it. One pass over the state, so that :func:`outstanding` looks at each
    query and relay in its own small state (thousands of queries stay quick)."""
    pushed: dict[str, dict[str, PushedBundle]] = defaultdict(dict)
    for key, rec in state.pushed.items():
        for bid in {rec.bundle_id, rec.in_reply_to}:
            if bid:
                pushed[bid][key] = rec
    pulled: dict[str, dict[str, PulledItem]] = defaultdict(dict)
    for name, item in state.pulled.items():
        f = item.fields or {}
        named = [f.get("in_reply_to"), f.get("query_id"), f.get("relay_id"), item.bundle_id]
        if item.kind == "receipt":
            named.append(f.get("bundle_id"))
        for bid in set(named):
            if isinstance(bid, str) and bid:
                pulled[bid][name] = item
    return lambda bid: State(dict(pushed.get(bid, {})), dict(pulled.get(bid, {})))


def outstanding(state: State, today: dt.date) -> list[Outstanding]:
    """What this directory still waits for or owes: pushes oldest first, then relays.

    ``today`` is the date in China (deadlines are dates in Asia/Shanghai): a due date before it
    counts as overdue. Never raises for what a state file may hold.
    """
    about = _about(state)
    items: list[Outstanding] = []
    for rec in sorted(state.pushed.values(), key=lambda r: r.created_at):
        item = _push_item(rec)
        if item is None and rec.kind == "query" and rec.verdict == "accepted":
            item = _query_item(about(rec.bundle_id), rec, today)
        if item is not None:
            items.append(item)
    relays = sorted(
        (p for p in state.pulled.values() if p.kind == "relay" and p.bundle_id),
        key=lambda p: p.pulled_at,
    )
    items += [i for r in relays if (i := _relay_item(about(r.bundle_id or ""), r, today))]
    return items


def partial_answers(state: State, names: list[str]) -> list[str]:
    """The queries that the result segments pulled as ``names`` closed not fully answered
    (a final segment with a resource not ``answered``), each once, in order."""
    found: list[str] = []
    for name in names:
        item = state.pulled.get(name)
        f = (item.fields or {}) if item is not None else {}
        if item is None or item.kind != "result" or not f.get("final"):
            continue
        query = f.get("in_reply_to")
        unanswered = any(s.get("state") != "answered" for s in f.get("statuses") or [])
        if unanswered and isinstance(query, str) and query not in found:
            found.append(query)
    return found
