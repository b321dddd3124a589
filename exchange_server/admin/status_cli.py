"""``exchange-server status``: what the node holds and what needs the administrator, at a glance.

A first slice of the administrator's view (issue "The administrator's node"): uploads by state,
kind and department; the oldest upload still moving; uploads the pipeline gave up on and holds
(``limits.max_attempts``); rejections by reason over the last day; relayed resources overdue or
due within a day; the CRL (current until when) and the node certificate's expiry. The JSON
(``--json``) has a versioned schema, :data:`SCHEMA`, documented in docs/operator-guide.md.
Output holds codes, states, counts and dates only: never an ID number or a name.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from sqlmodel import Session, col, func, select

from exchange_common.cli import console, emit_json, fail_on_error
from exchange_common.errors import InputError
from exchange_server.admin.cli_shared import HomeOpt, JsonOpt, _node, command_group
from exchange_server.crl import crl_status
from exchange_server.node import Node, utcnow
from exchange_server.store.audit import EventSpec, append_events
from exchange_server.store.calendar import load_calendar
from exchange_server.store.checkpoints import newest_checkpoint
from exchange_server.store.models import (
    AuditEvent,
    Query,
    QueryResource,
    QueryState,
    ResourceState,
    Upload,
    as_utc,
)

__all__ = ["SCHEMA", "needs_attention", "node_status", "status", "upload_app"]

#: The ``--json`` schema's name and version (a field added keeps it; a field changed bumps it).
SCHEMA = "exchange-node-status/1"

#: An upload waiting this long for the pipeline means the pipeline is down or far behind.
PIPELINE_LATE_SECONDS = 300

#: Bundle kinds the node accepts and keeps in ``routed`` with no step for them yet (the issue
#: "The rest of the verification procedure" adds them): shown as stuck.
UNHANDLED_KINDS = ("recheck", "revocation")

#: Upload states in which the pipeline, or a relay, still has work to do.
_MOVING = ("received", "accepted", "routed")


def _iso(value: dt.datetime | None) -> str | None:
    return as_utc(value).isoformat(timespec="seconds") if value is not None else None


def node_status(node: Node, now: dt.datetime) -> dict[str, Any]:
    """The node's status at ``now`` as the ``--json`` document (schema :data:`SCHEMA`)."""
    limit = node.config.limits.max_attempts
    day_ago = now - dt.timedelta(days=1)
    # counted by the store (GROUP BY), never by loading every upload ever received
    with node.session(write=False) as s:
        counts = s.exec(
            select(Upload.dept_code, Upload.state, Upload.kind, func.count()).group_by(
                col(Upload.dept_code), col(Upload.state), col(Upload.kind)
            )
        ).all()
        oldest = s.exec(
            select(Upload)
            .where(col(Upload.state).in_(_MOVING))
            .order_by(col(Upload.received_at))
            .limit(1)
        ).first()
        rejected = s.exec(
            select(Upload.reason_code, func.count())
            .where(Upload.state == "rejected", col(Upload.updated_at) >= day_ago)
            .group_by(col(Upload.reason_code))
        ).all()
        held = s.exec(
            select(Upload).where(
                col(Upload.state).in_(("received", "accepted")), col(Upload.attempts) >= limit
            )
        ).all()
        waiting = s.exec(
            select(QueryResource).where(
                col(QueryResource.state).in_([st.value for st in ResourceState if st.waiting])
            )
        ).all()
        stuck = _stuck(s, now)
        calendar = load_calendar(s).coverage()
        events = s.exec(select(func.count()).select_from(AuditEvent)).one()
        checkpoint = newest_checkpoint(s)
    by_state: Counter[str] = Counter()
    by_kind: Counter[str] = Counter()
    by_dept: dict[str, Counter[str]] = {}
    for dept, state, kind, n in counts:
        by_state[state] += n
        by_kind[kind or "(unverified)"] += n
        by_dept.setdefault(dept or "(drop folder)", Counter())[state] += n
    rejections = Counter({code or "?": int(n) for code, n in rejected})
    soon = now + dt.timedelta(days=1)
    crl = crl_status(node, now)
    leaf = node.identity()[0][0]
    return {
        "schema": SCHEMA,
        "node": {"code": node.config.code, "at": _iso(now)},
        "uploads": {
            "by_state": dict(by_state),
            "by_kind": dict(by_kind),
            "by_department": {d: dict(c) for d, c in sorted(by_dept.items())},
        },
        "oldest_moving": None
        if oldest is None
        else {
            "upload_id": oldest.id,
            "department": oldest.dept_code,
            "kind": oldest.kind,
            "state": oldest.state,
            "received_at": _iso(oldest.received_at),
            "age_seconds": int((now - as_utc(oldest.received_at)).total_seconds()),
        },
        "held": [
            {
                "upload_id": u.id,
                "bundle_id": u.bundle_id,
                "department": u.dept_code,
                "kind": u.kind,
                "state": u.state,
                "attempts": u.attempts,
            }
            for u in held
        ],
        "rejections_last_day": dict(rejections.most_common()),
        "deadlines": {
            "overdue": sum(r.state == ResourceState.OVERDUE.value for r in waiting),
            "due_within_a_day": sum(
                r.state != ResourceState.OVERDUE.value
                and r.due_at is not None
                and as_utc(r.due_at) <= soon
                for r in waiting
            ),
        },
        "crl": {
            "current": crl.current,
            "code": crl.code,
            "next_update": _iso(crl.next_update),
            "message": crl.message,
        },
        "certificate": {
            "not_after": _iso(leaf.not_valid_after_utc),
            "days_left": (leaf.not_valid_after_utc - now).days,
        },
        "stuck": stuck,
        "pipeline": _pipeline(by_state, oldest, held, now),
        "calendar": {
            "years": [y for y, _ in calendar],
            "covers_this_year": any(y == now.year for y, _ in calendar),
            "covers_next_year": any(y == now.year + 1 for y, _ in calendar),
        },
        "audit": {
            "events": int(events),
            "checkpointed": checkpoint.size if checkpoint else 0,
            "newest_checkpoint_at": _iso(checkpoint.at) if checkpoint else None,
        },
    }


def _stuck(s: Session, now: dt.datetime) -> list[dict[str, Any]]:
    """Uploads waiting with nothing that will move them: a kind the node keeps in ``routed``
    with no step for it yet (:data:`UNHANDLED_KINDS`), or a query upload whose query has been
    closed (or is missing) for more than a minute (the pipeline settles those in passing)."""
    rows = s.exec(
        select(Upload, Query.state)
        .join(Query, col(Query.bundle_id) == col(Upload.bundle_id), isouter=True)
        .where(Upload.state == "routed")
    ).all()
    out = []
    for up, query_state in rows:
        if up.kind in UNHANDLED_KINDS:
            why = f"no step handles {up.kind} bundles yet"
        elif up.kind == "query" and query_state not in (QueryState.OPEN, QueryState.SUSPENDED):
            if now - as_utc(up.updated_at) < dt.timedelta(minutes=1):
                continue
            why = f"its query is {query_state or 'not recorded'}"
        else:
            continue
        out.append(
            {
                "upload_id": up.id,
                "bundle_id": up.bundle_id,
                "department": up.dept_code,
                "kind": up.kind,
                "since": _iso(up.updated_at),
                "why": why,
            }
        )
    return out


def _pipeline(
    by_state: Counter[str], oldest: Upload | None, held: Sequence[Upload], now: dt.datetime
) -> dict[str, Any]:
    """The pipeline's health from what it left in the store: its queue (uploads received or
    accepted, not yet through review and routing), the oldest of them, and what it holds."""
    queued = by_state.get("received", 0) + by_state.get("accepted", 0)
    age = (
        int((now - as_utc(oldest.received_at)).total_seconds())
        if oldest is not None and oldest.state in ("received", "accepted")
        else 0
    )
    return {
        "queued": queued,
        "oldest_queued_seconds": age,
        "held": len(held),
        "healthy": not held and age < PIPELINE_LATE_SECONDS,
    }


def needs_attention(doc: dict[str, Any], now: dt.datetime) -> bool:
    """Whether a status document shows something the administrator must act on: a held or
    stuck upload, a pipeline not keeping up, an overdue deadline, a CRL not current or due
    within a day, a node certificate with less than 30 days left, no working-day calendar for
    this year (or, in December, for the next)."""
    crl = doc["crl"]
    next_update = crl.get("next_update")
    crl_due = next_update is not None and dt.datetime.fromisoformat(next_update) - now < (
        dt.timedelta(days=1)
    )
    cal = doc["calendar"]
    return bool(
        doc["held"]
        or doc["stuck"]
        or not doc["pipeline"]["healthy"]
        or doc["deadlines"]["overdue"]
        or not crl["current"]
        or crl_due
        or doc["certificate"]["days_left"] < 30
        or not cal["covers_this_year"]
        or (now.month == 12 and not cal["covers_next_year"])
    )


@fail_on_error
def status(home: HomeOpt, json_out: JsonOpt = False) -> None:
    """What the node holds and what needs you: uploads by state, the oldest still moving, uploads
    held after repeated failures, rejections of the last day, overdue deadlines, the CRL and the
    node certificate.

    Exit 0 when nothing needs attention; 1 when something does (:func:`needs_attention`: a
    held or stuck upload, a pipeline not keeping up, an overdue deadline, a CRL not current or
    due within a day, a node certificate with less than 30 days left, a year without a
    working-day calendar).

    **Examples**

        exchange-server status --home /srv/node

        exchange-server status --home /srv/node --json
    """
    now = utcnow()
    doc = node_status(_node(home), now)
    attention = needs_attention(doc, now)
    if json_out:
        emit_json(doc | {"attention": attention})
    else:
        up = doc["uploads"]["by_state"]
        lines = [
            f"node {doc['node']['code']} at {doc['node']['at']}",
            "uploads: " + (", ".join(f"{k} {v}" for k, v in sorted(up.items())) or "none"),
        ]
        if doc["oldest_moving"]:
            o = doc["oldest_moving"]
            lines.append(
                f"oldest still moving: {o['upload_id']} ({o['department']}, {o['kind']}, "
                f"{o['state']}) for {o['age_seconds']} s"
            )
        for h in doc["held"]:
            lines.append(
                f"HELD after {h['attempts']} failed attempts: upload {h['upload_id']} "
                f"({h['department']}, {h['kind']}, {h['state']})"
            )
        rej = doc["rejections_last_day"]
        lines.append(
            "rejections (last day): " + (", ".join(f"{k} {v}" for k, v in rej.items()) or "none")
        )
        d = doc["deadlines"]
        lines.append(f"deadlines: {d['overdue']} overdue, {d['due_within_a_day']} due within a day")
        crl = doc["crl"]
        lines.append(
            f"CRL: current until {crl['next_update']}"
            if crl["current"]
            else f"CRL NOT CURRENT ({crl['code']}): {crl['message']}"
        )
        cert = doc["certificate"]
        lines.append(
            f"node certificate: valid until {cert['not_after']} ({cert['days_left']} days)"
        )
        for item in doc["stuck"]:
            lines.append(
                f"STUCK since {item['since']}: upload {item['upload_id']} ({item['department']}, "
                f"{item['kind']}): {item['why']}"
            )
        p = doc["pipeline"]
        lines.append(
            f"pipeline: {'ok' if p['healthy'] else 'NOT KEEPING UP'}, {p['queued']} queued"
            + (f", the oldest for {p['oldest_queued_seconds']} s" if p["queued"] else "")
        )
        cal = doc["calendar"]
        lines.append(
            "working-day calendar: "
            + (", ".join(str(y) for y in cal["years"]) or "no year")
            + ("" if cal["covers_this_year"] else f" (NOT {now.year}: import it)")
        )
        a = doc["audit"]
        lines.append(
            f"audit trail: {a['events']} events, {a['checkpointed']} under a signed checkpoint"
            + (f" (newest {a['newest_checkpoint_at']})" if a["newest_checkpoint_at"] else "")
        )
        for line in lines:
            console.print(line, markup=False)
    if attention:
        raise typer.Exit(1)


upload_app = command_group(
    "upload",
    "Uploads on this node: take up one the pipeline gave up on and holds.",
)


@upload_app.command("retry")
@fail_on_error
def retry(
    home: HomeOpt,
    upload_id: Annotated[str, typer.Argument(help="The held upload (from `status`).")],
    by: Annotated[str, typer.Option("--by", help="Who decided (name or post, recorded).")],
    json_out: JsonOpt = False,
) -> None:
    """Let the pipeline take up again an upload it held after `[limits] max_attempts` failures
    (fix the cause first: the log names it). Its failure count starts again from zero; audited
    `bundle.retry` with who decided. Refused (exit 3) for an upload that is not held.

    **Example**

        exchange-server upload retry --home /srv/node 6f1c2d3e-… --by 张科长
    """
    node = _node(home)
    if not by.strip():
        raise InputError("--by must name who decided")
    now = utcnow()
    with node.session() as s:
        up = s.get(Upload, upload_id)
        held = (
            up is not None
            and up.state in ("received", "accepted")
            and up.attempts >= node.config.limits.max_attempts
        )
        if up is None or not held:
            raise InputError(f"upload {upload_id} is not held", code="E_NOT_FOUND")
        up.attempts = 0
        s.add(up)
        append_events(
            s,
            [EventSpec(by.strip()[:64], "bundle.retry", up.bundle_id, {"upload": up.id})],
            now=now,
        )
    if json_out:
        emit_json({"upload_id": upload_id, "retried": True})
    else:
        console.print(f"upload {upload_id} is queued again", markup=False)
