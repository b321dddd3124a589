"""The node's audit trail: an append-only, hash-chained event log in the state store.

Every event stores the SHA-256 of its predecessor, so deleting or editing any event breaks the
chain at that point and :func:`verify_chain` names it (办法 第十九条 usage logs; 浙江 六(三) trace
records are never deleted or modified). Details are JSON and must already be masked: callers
never put ID numbers or names of persons in them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, text
from sqlmodel import Session, col, select

from exchange_common.errors import StoreError
from exchange_server.store.models import AuditEvent, AuditPerson, as_utc
from pki.audit_extract import event_leaf, person_leaf
from pki.merkle import CompactRange, leaf_hash

__all__ = [
    "EventSpec",
    "PersonRef",
    "append_event",
    "append_events",
    "check_link",
    "event_leaf_hash",
    "person_digest",
    "person_root",
    "verify_chain",
]

GENESIS = "0" * 64


def _digest(
    prev: str, seq: int, at: dt.datetime, actor: str, action: str, subject: str | None, detail: str
) -> str:
    payload = json.dumps(
        [prev, seq, as_utc(at).isoformat(), actor, action, subject, detail],
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


#: A person of an audited query: (keyed digest of the ID number, authorization reference).
PersonRef = tuple[str, str | None]


@dataclass(frozen=True)
class EventSpec:
    """One event to append (see :func:`append_events`).

    ``persons`` (a query's persons as :data:`PersonRef`, in file order) are indexed in
    ``audit_person`` and committed to by ``person_root`` and ``persons`` in the detail.
    """

    actor: str
    action: str
    subject: str | None = None
    detail: dict[str, Any] | None = None
    persons: Sequence[PersonRef] = ()


def event_leaf_hash(ev: AuditEvent) -> bytes:
    """The RFC 9162 leaf hash of a stored event (:func:`pki.audit_extract.event_leaf`)."""
    return leaf_hash(
        event_leaf(ev.seq, as_utc(ev.at).isoformat(), ev.actor, ev.action, ev.subject, ev.detail)
    )


def person_root(persons: Sequence[PersonRef]) -> bytes:
    """The Merkle root over ``persons`` in order (:func:`pki.audit_extract.person_leaf`)."""
    tree = CompactRange()
    for digest, authorization in persons:
        tree.append(leaf_hash(person_leaf(digest, authorization)))
    return tree.root()


def append_events(
    session: Session, events: Sequence[EventSpec], *, now: dt.datetime
) -> list[AuditEvent]:
    """Append ``events`` in order inside the caller's transaction (they commit with the change
    they record, or not at all).

    The chain head is read once per call. On PostgreSQL the table is locked for the rest of
    the transaction so concurrent node processes cannot fork the chain; on SQLite the caller's
    transaction holds the write lock (``Node.session()`` begins IMMEDIATE).
    """
    if not events:
        return []
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        session.execute(text("LOCK TABLE audit_event IN SHARE ROW EXCLUSIVE MODE"))
    last = session.exec(select(AuditEvent).order_by(col(AuditEvent.seq).desc()).limit(1)).first()
    seq, prev = (last.seq, last.hash) if last else (0, GENESIS)
    at = now.astimezone(dt.UTC).replace(microsecond=0)
    out = []
    people: list[dict[str, Any]] = []
    for spec in events:
        seq += 1
        detail = dict(spec.detail or {})
        if spec.persons:
            detail["persons"] = len(spec.persons)
            detail["person_root"] = person_root(spec.persons).hex()
            people.extend(
                {"seq": seq, "position": i, "digest": d, "auth_ref": a}
                for i, (d, a) in enumerate(spec.persons)
            )
        detail_text = json.dumps(detail, ensure_ascii=False, sort_keys=True)
        digest = _digest(prev, seq, at, spec.actor, spec.action, spec.subject, detail_text)
        event = AuditEvent(
            seq=seq,
            at=at,
            actor=spec.actor,
            action=spec.action,
            subject=spec.subject,
            detail=detail_text,
            prev_hash=prev,
            hash=digest,
        )
        session.add(event)
        out.append(event)
        prev = digest
    session.flush()
    if people:
        session.execute(insert(AuditPerson), people)
    return out


def append_event(
    session: Session,
    *,
    actor: str,
    action: str,
    subject: str | None = None,
    detail: dict[str, Any] | None = None,
    now: dt.datetime,
) -> AuditEvent:
    """Append one event inside the caller's transaction (see :func:`append_events`)."""
    return append_events(session, [EventSpec(actor, action, subject, detail)], now=now)[0]


def person_digest(key: bytes, id_number: str) -> str:
    """The keyed digest (HMAC-SHA256, hex) of a canonical ID number under the node audit key:
    what the trail holds instead of the number."""
    return hmac.new(key, id_number.encode(), hashlib.sha256).hexdigest()


def check_link(ev: AuditEvent, prev: str, expected: int) -> None:
    """Raise ``StoreError`` E_AUDIT unless ``ev`` is event ``expected`` and its stored hash
    links it to ``prev`` over its own fields (names the event: missing, or altered)."""
    if ev.seq != expected:
        raise StoreError(f"audit trail broken: event {expected} is missing", code="E_AUDIT")
    if ev.prev_hash != prev or ev.hash != _digest(
        prev, ev.seq, ev.at, ev.actor, ev.action, ev.subject, ev.detail
    ):
        raise StoreError(f"audit trail broken: event {ev.seq} was altered", code="E_AUDIT")


def verify_chain(session: Session) -> int:
    """Walk the whole hash chain; return the number of events or raise ``StoreError`` E_AUDIT.
    (:func:`exchange_server.store.checkpoints.verify_trail` also checks the Merkle tree,
    checkpoints and person index.)"""
    prev = GENESIS
    expected = 1
    for ev in session.exec(select(AuditEvent).order_by(col(AuditEvent.seq))):
        check_link(ev, prev, expected)
        prev = ev.hash
        expected += 1
    return expected - 1
