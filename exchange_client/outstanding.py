"""Where the bundles of a client directory stand, from what it recorded locally (pure).

Built only from the state file (:mod:`exchange_client.state`): the receipts, result segments and
notices pulled so far. Nothing is asked of the node, so what this says is as fresh as the last
``pull``.
"""

from __future__ import annotations

from typing import Any

from exchange_client.state import State
from exchange_common.errors import InputError

__all__ = ["query_status"]


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
        overall = "answered" if answered else "closed, not fully answered"
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
