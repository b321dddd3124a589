"""The node's audit trail: an append-only, hash-chained event log in the state store.

Every event stores the SHA-256 of its predecessor, so deleting or editing any event breaks the
chain at that point and :func:`verify_chain` names it (办法 第十九条 usage logs; 浙江 六(三) trace
records are never deleted or modified). Details are JSON and must already be masked: callers
never put ID numbers or names of persons in them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from sqlalchemy import text
from sqlmodel import Session, col, select

from exchange_server.store.models import AuditEvent, as_utc
from pki.errors import StoreError

__all__ = ["append_event", "verify_chain"]

GENESIS = "0" * 64


def _digest(
    prev: str, seq: int, at: dt.datetime, actor: str, action: str, subject: str | None, detail: str
) -> str:
    payload = json.dumps(
        [prev, seq, as_utc(at).isoformat(), actor, action, subject, detail],
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def append_event(
    session: Session,
    *,
    actor: str,
    action: str,
    subject: str | None = None,
    detail: dict[str, Any] | None = None,
    now: dt.datetime,
) -> AuditEvent:
    """Append one event inside the caller's transaction (it commits with the change it records).

    On PostgreSQL the table is locked for the rest of the transaction so concurrent node
    processes cannot fork the chain; SQLite serialises writers by itself.
    """
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        session.execute(text("LOCK TABLE audit_event IN SHARE ROW EXCLUSIVE MODE"))
    last = session.exec(select(AuditEvent).order_by(col(AuditEvent.seq).desc()).limit(1)).first()
    seq, prev = (last.seq + 1, last.hash) if last else (1, GENESIS)
    at = now.astimezone(dt.UTC).replace(microsecond=0)
    detail_text = json.dumps(detail or {}, ensure_ascii=False, sort_keys=True)
    event = AuditEvent(
        seq=seq,
        at=at,
        actor=actor,
        action=action,
        subject=subject,
        detail=detail_text,
        prev_hash=prev,
        hash=_digest(prev, seq, at, actor, action, subject, detail_text),
    )
    session.add(event)
    session.flush()
    return event


def verify_chain(session: Session) -> int:
    """Walk the whole trail; return the number of events or raise ``StoreError`` E_AUDIT."""
    prev = GENESIS
    expected = 1
    for ev in session.exec(select(AuditEvent).order_by(col(AuditEvent.seq))):
        if ev.seq != expected:
            raise StoreError(f"audit trail broken: event {expected} is missing", code="E_AUDIT")
        if ev.prev_hash != prev or ev.hash != _digest(
            prev, ev.seq, ev.at, ev.actor, ev.action, ev.subject, ev.detail
        ):
            raise StoreError(f"audit trail broken: event {ev.seq} was altered", code="E_AUDIT")
        prev = ev.hash
        expected += 1
    return expected - 1
