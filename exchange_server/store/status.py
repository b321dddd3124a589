"""The node's status as the store, the trust files and the certificate show it: one document
(schema :data:`SCHEMA`) for ``exchange-server status``, ``watch``, ``/status.json`` and the
status page, and the one rule for what needs the administrator (:func:`needs_attention`).

Codes, states, counts and dates only: never an ID number or a name. Every count is a GROUP BY
in the store, never a load of every upload ever received.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, func, select

from exchange_server.crl import crl_status
from exchange_server.node import Node
from exchange_server.store.calendar import load_calendar
from exchange_server.store.checkpoints import newest_checkpoint
from exchange_server.store.models import (
    AuditEvent,
    Department,
    Query,
    QueryResource,
    QueryState,
    ResourceState,
    Upload,
    as_utc,
)
from exchange_server.store.pulls import Usage, department_usage
from exchange_server.store.registry import department_certificate
from pki.standing import CertState, certificate_standing

#: Less free space than this share of the spool's disk needs the administrator.
DISK_LOW_FRACTION = 0.05
#: A department using this share of its quota needs the administrator (its uploads stop at 1).
QUOTA_HIGH_FRACTION = 0.9

__all__ = [
    "PIPELINE_LATE_SECONDS",
    "SCHEMA",
    "UNHANDLED_KINDS",
    "attention_reasons",
    "needs_attention",
    "node_status",
]

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
        spool_root = node.config.path(node.config.spool)
        codes = s.exec(select(Department.code).order_by(col(Department.code))).all()
        usage = {c: department_usage(s, spool_root / "depts" / c / "outbox", c) for c in codes}
        certs = _department_certificates(node, s, codes, now)
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
    leaf = node.chain()[0]
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
        "department_certificates": certs,
        "stuck": stuck,
        "spool": _spool(spool_root, usage),
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


def _department_certificates(
    node: Node, s: Session, codes: Sequence[str], now: dt.datetime
) -> list[dict[str, Any]]:
    """Departments whose registered certificate is not simply valid: revoked, expired, or
    ending within :data:`~pki.standing.EXPIRY_WARNING_DAYS` (the node refuses the first two)."""
    trust = node.trust()
    issuers = node.chain()[1:]
    out = []
    for code in codes:
        cert = department_certificate(s, code)
        if cert is None:
            continue
        standing = certificate_standing(cert, trust, now, issuers=issuers)
        if standing.state in (CertState.VALID, CertState.NO_CURRENT_CRL):
            continue
        out.append(
            {
                "department": code,
                "state": standing.state.value,
                "not_after": _iso(standing.not_after),
                "days_left": standing.days_left,
            }
        )
    return out


def _spool(root: Path, usage: dict[str, Usage]) -> dict[str, Any]:
    """The disk under the spool and each department's quota use (the node's quota rule)."""
    try:
        disk = shutil.disk_usage(root)
        free: dict[str, Any] = {"total_bytes": disk.total, "free_bytes": disk.free}
    except OSError:
        free = {"total_bytes": None, "free_bytes": None}
    return {
        "disk": free,
        "by_department": {
            code: {
                "outbox_files": u.outbox_files,
                "outbox_bytes": u.outbox_bytes,
                "counted_bytes": u.counted_bytes,
                "quota_bytes": u.quota_bytes,
            }
            for code, u in usage.items()
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


def attention_reasons(doc: dict[str, Any], now: dt.datetime) -> list[str]:
    """What in a status document the administrator must act on, in words (empty: nothing): a
    held or stuck upload, a pipeline not keeping up, an overdue deadline, a CRL not current or
    due within a day, a node certificate with less than 30 days left, the spool's disk almost
    full, a department near its quota, no working-day calendar for this year (or, in December,
    for the next)."""
    out: list[str] = []
    if doc["held"]:
        out.append(f"{len(doc['held'])} upload(s) held after repeated failures")
    if doc["stuck"]:
        out.append(f"{len(doc['stuck'])} upload(s) stuck")
    if not doc["pipeline"]["healthy"]:
        out.append("the pipeline is not keeping up")
    if doc["deadlines"]["overdue"]:
        out.append(f"{doc['deadlines']['overdue']} deadline(s) overdue")
    crl = doc["crl"]
    next_update = crl.get("next_update")
    if not crl["current"]:
        out.append(f"the CRL is not current ({crl.get('code')})")
    elif next_update and dt.datetime.fromisoformat(next_update) - now < dt.timedelta(days=1):
        out.append("the CRL must be replaced within a day")
    if doc["certificate"]["days_left"] < 30:
        out.append(f"the node certificate ends in {doc['certificate']['days_left']} days")
    for c in doc.get("department_certificates", []):
        if c["state"] == CertState.EXPIRES_SOON.value:
            out.append(f"{c['department']}'s certificate ends in {c['days_left']} days")
        else:
            out.append(f"{c['department']}'s certificate is {c['state'].replace('-', ' ')}")
    spool = doc.get("spool", {})
    disk = spool.get("disk", {})
    if disk.get("total_bytes") and disk["free_bytes"] < disk["total_bytes"] * DISK_LOW_FRACTION:
        out.append(f"the spool's disk is almost full ({disk['free_bytes']} bytes free)")
    for code, u in spool.get("by_department", {}).items():
        if u["quota_bytes"] and u["counted_bytes"] >= u["quota_bytes"] * QUOTA_HIGH_FRACTION:
            share = 100 * u["counted_bytes"] // u["quota_bytes"]
            out.append(f"{code} uses {share}% of its quota")
    cal = doc["calendar"]
    if not cal["covers_this_year"]:
        out.append(f"no working-day calendar for {now.year}")
    elif now.month == 12 and not cal["covers_next_year"]:
        out.append(f"no working-day calendar for {now.year + 1} yet")
    return out


def needs_attention(doc: dict[str, Any], now: dt.datetime) -> bool:
    """Whether :func:`attention_reasons` finds anything."""
    return bool(attention_reasons(doc, now))
