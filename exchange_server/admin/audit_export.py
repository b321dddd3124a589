"""What ``exchange-server audit export`` and ``audit person`` select and prove.

An extract (schema :data:`pki.audit_extract.EXTRACT_SCHEMA`) holds the selected events as
stored, each with its RFC 9162 inclusion proof to a checkpoint signed at export time, the
node's certificate chain and, for a person search, each query's proof that the person's keyed
digest is among its persons. ``exchange-pki audit verify`` checks it offline.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, or_
from sqlmodel import Session, col, select

from exchange_common.errors import InputError, StoreError
from exchange_common.idnumber import china_today, normalize_id
from exchange_server.node import Node
from exchange_server.store.audit import event_leaf_hash, person_digest
from exchange_server.store.checkpoints import (
    checkpoint_now,
    newest_checkpoint,
    node_public_key,
    origin_for,
)
from exchange_server.store.models import AuditEvent, AuditPerson, as_utc
from pki.audit_extract import EXTRACT_SCHEMA, person_leaf
from pki.checkpoint import open_checkpoint
from pki.keys import certificate_pem
from pki.merkle import MerkleTree, leaf_hash

__all__ = ["Selection", "build_extract", "digest_of", "person_events"]


@dataclass(frozen=True)
class Selection:
    """Which events an extract holds (all given conditions hold; ``everything`` for none)."""

    department: str | None = None
    bundle: str | None = None
    person: str | None = None  # a keyed digest, never the number
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    everything: bool = False

    def describe(self) -> dict[str, Any]:
        """The selection as the extract records it (the person as its digest)."""
        return {
            "department": self.department,
            "bundle": self.bundle,
            "person_digest": self.person,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
        }


def digest_of(node: Node, id_number: str) -> str:
    """The keyed digest of ``id_number`` (validated and normalised first; ``IdNumberError``
    names the failing check without echoing the number)."""
    return person_digest(node.audit_key(), normalize_id(id_number, today=china_today()))


def _like(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _conditions(sel: Selection) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = []
    if sel.department:
        conds.append(
            or_(
                col(AuditEvent.actor) == sel.department,
                col(AuditEvent.subject) == sel.department,
                col(AuditEvent.detail).like(_like(f'"{sel.department}"'), escape="\\"),
            )
        )
    if sel.bundle:
        conds.append(
            or_(
                col(AuditEvent.subject) == sel.bundle,
                col(AuditEvent.detail).like(_like(sel.bundle), escape="\\"),
            )
        )
    if sel.person:
        seqs = select(AuditPerson.seq).where(AuditPerson.digest == sel.person)
        conds.append(col(AuditEvent.seq).in_(seqs))
    if sel.since:
        conds.append(col(AuditEvent.at) >= as_utc(sel.since))
    if sel.until:
        conds.append(col(AuditEvent.at) < as_utc(sel.until))
    return conds


def person_events(session: Session, digest: str) -> list[tuple[AuditEvent, AuditPerson]]:
    """Every audited query naming the person with keyed digest ``digest``, oldest first, with
    the person's index row (its authorization reference, masked when it was stored)."""
    rows = session.exec(
        select(AuditEvent, AuditPerson)
        .join(AuditPerson, col(AuditPerson.seq) == col(AuditEvent.seq))
        .where(AuditPerson.digest == digest)
        .order_by(col(AuditEvent.seq))
    ).all()
    return [(ev, p) for ev, p in rows]


def _person_proof(session: Session, seq: int, digest: str) -> dict[str, Any]:
    rows = session.exec(
        select(AuditPerson).where(AuditPerson.seq == seq).order_by(col(AuditPerson.position))
    ).all()
    tree = MerkleTree([leaf_hash(person_leaf(r.digest, r.auth_ref)) for r in rows])
    mine = next(r for r in rows if r.digest == digest)
    return {
        "digest": mine.digest,
        "authorization": mine.auth_ref,
        "position": mine.position,
        "proof": [h.hex() for h in tree.inclusion_proof(mine.position)],
    }


def _leaves(session: Session, size: int) -> list[bytes]:
    out: list[bytes] = []
    q = select(AuditEvent).where(col(AuditEvent.seq) <= size).order_by(col(AuditEvent.seq))
    for ev in session.exec(q.execution_options(yield_per=5000)):
        out.append(event_leaf_hash(ev))
    return out


def build_extract(
    node: Node, sel: Selection, *, now: dt.datetime, older: str | None = None
) -> dict[str, Any]:
    """Sign a checkpoint over the whole trail now, then build the extract of ``sel`` under it.

    ``older`` is an earlier checkpoint note (an inspector's copy): the extract then carries
    the consistency proof from it. Raises ``InputError`` E_USAGE for an empty selection,
    ``PeerError`` E_CHECKPOINT when ``older`` is not the node's, ``StoreError`` E_AUDIT when
    the trail does not cover it or does not match its newest checkpoint.
    """
    conds = _conditions(sel)
    if not conds and not sel.everything:
        raise InputError(
            "say what to export: --department, --bundle, --person, --since/--until, or --all",
            code="E_USAGE",
        )
    checkpoint_now(node, now)
    chain, _ = node.identity()
    origin = origin_for(node.config.code)
    with node.session(write=False) as s:
        newest = newest_checkpoint(s)
        if newest is None:
            raise InputError("the audit trail is empty: nothing to export", code="E_NOT_FOUND")
        size = newest.size
        tree = MerkleTree(_leaves(s, size))
        if tree.size != size or tree.root(size).hex() != newest.root:
            raise StoreError(
                "the trail does not match its newest checkpoint: run audit verify",
                code="E_AUDIT",
            )
        q = select(AuditEvent).where(col(AuditEvent.seq) <= size, *conds)
        events = []
        for ev in s.exec(q.order_by(col(AuditEvent.seq))):
            item: dict[str, Any] = {
                "seq": ev.seq,
                "at": as_utc(ev.at).isoformat(),
                "actor": ev.actor,
                "action": ev.action,
                "subject": ev.subject,
                "detail": ev.detail,
                "hash": ev.hash,
                "proof": [h.hex() for h in tree.inclusion_proof(ev.seq - 1, size)],
            }
            if sel.person:
                item["person"] = _person_proof(s, ev.seq, sel.person)
            events.append(item)
    doc: dict[str, Any] = {
        "schema": EXTRACT_SCHEMA,
        "origin": origin,
        "node": node.config.code,
        "exported_at": now.astimezone(dt.UTC).isoformat(timespec="seconds"),
        "selection": sel.describe(),
        "checkpoint": newest.note,
        "certificate": "".join(certificate_pem(c).decode() for c in chain),
        "events": events,
    }
    if older is not None:
        doc["consistency"] = _consistency(node, tree, older, origin)
    return doc


def _consistency(node: Node, tree: MerkleTree, older: str, origin: str) -> dict[str, Any]:
    old = open_checkpoint(older, node_public_key(node), origin=origin)
    if old.size > tree.size:
        raise StoreError(
            f"--consistency-from covers {old.size} events, the trail only {tree.size}: "
            "the tail was truncated",
            code="E_AUDIT",
        )
    return {
        "from_size": old.size,
        "proof": [h.hex() for h in tree.consistency_proof(old.size, tree.size)],
    }
