"""Signed checkpoints of the audit trail, and the check of the whole trail against them.

The hash chain of :mod:`.audit` finds an event altered, deleted or reordered, but not a tail
cut off, and nothing outside the database can check it. Transparency logs add two things,
which this module keeps for the trail (docs/audit.md):

- an RFC 9162 Merkle tree with one leaf per event (:func:`.audit.event_leaf_hash`), so any
  event can be proved to an inspector in log2(n) hashes (:mod:`pki.audit_extract`);
- signed checkpoints (C2SP ``tlog-checkpoint`` notes, :mod:`pki.checkpoint`) made by
  :func:`make_checkpoint` at an interval and at shutdown. Each continues from the previous
  one's right edge, so a checkpoint reads only the events added since. The node signs only
  after checking the new events' hash links, so it never signs over a broken trail, and
  several processes on one PostgreSQL take turns through a table lock.

:func:`verify_trail` walks the events once (memory stays flat) and checks the chain, every
stored checkpoint and any checkpoint kept elsewhere (the published file, an inspector's copy),
and each audited query's person index.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import func, text
from sqlmodel import Session, col, select

from exchange_common.errors import InputError, PeerError, StoreError
from exchange_common.fs import atomic_write, private_dir
from exchange_server.node import Node
from exchange_server.store.audit import GENESIS, check_link, event_leaf_hash, person_root
from exchange_server.store.models import AuditCheckpoint, AuditEvent, AuditPerson, as_utc
from pki.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from pki.keys import PrivateKey, PublicKey
from pki.merkle import CompactRange

__all__ = [
    "ExternalCheckpoint",
    "TrailReport",
    "checkpoint_now",
    "make_checkpoint",
    "newest_checkpoint",
    "node_public_key",
    "note_size",
    "origin_for",
    "published_checkpoint",
    "verify_trail",
]

#: Events read per round trip while walking the trail.
_BATCH = 5000


def origin_for(node_code: str) -> str:
    """The checkpoint origin (and signing key name) of node ``node_code``'s trail."""
    return f"exchange-node/{node_code}/audit"


def _broken(why: str) -> StoreError:
    return StoreError(f"audit trail broken: {why}", code="E_AUDIT")


def _lock(session: Session, table: str) -> None:
    """Serialise writers across node processes (PostgreSQL); SQLite's writer session already
    holds the database's write lock."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"LOCK TABLE {table} IN EXCLUSIVE MODE"))


def _events_after(session: Session, seq: int) -> Sequence[AuditEvent]:
    return session.exec(
        select(AuditEvent)
        .where(col(AuditEvent.seq) > seq)
        .order_by(col(AuditEvent.seq))
        .limit(_BATCH)
    ).all()


def newest_checkpoint(session: Session) -> AuditCheckpoint | None:
    """The newest stored checkpoint, or ``None`` before the first."""
    return session.exec(
        select(AuditCheckpoint).order_by(col(AuditCheckpoint.size).desc()).limit(1)
    ).first()


def make_checkpoint(
    session: Session, key: PrivateKey, origin: str, *, now: dt.datetime
) -> AuditCheckpoint | None:
    """Sign a checkpoint over every event committed so far, inside the caller's transaction;
    ``None`` when no event was added since the newest checkpoint.

    Raises ``StoreError`` E_AUDIT (and signs nothing) when an event since the newest
    checkpoint is missing or altered, or when that checkpoint's last event is gone.
    """
    _lock(session, "audit_checkpoint")
    last = newest_checkpoint(session)
    tree = CompactRange()
    prev = GENESIS
    if last is not None:
        tree = CompactRange(last.size, [bytes.fromhex(h) for h in json.loads(last.frontier)])
        edge = session.get(AuditEvent, last.size)
        if edge is None:
            raise _broken(f"event {last.size}, the last one checkpointed, is missing")
        prev = edge.hash
    while batch := _events_after(session, tree.size):
        for ev in batch:
            check_link(ev, prev, tree.size + 1)
            tree.append(event_leaf_hash(ev))
            prev = ev.hash
    if last is not None and tree.size == last.size:
        return None
    if tree.size == 0:
        return None
    root = tree.root()
    row = AuditCheckpoint(
        size=tree.size,
        at=now.astimezone(dt.UTC).replace(microsecond=0),
        root=root.hex(),
        note=sign_checkpoint(Checkpoint(origin, tree.size, root), key),
        frontier=json.dumps([h.hex() for h in tree.hashes]),
    )
    session.add(row)
    session.flush()
    return row


@dataclass(frozen=True)
class ExternalCheckpoint:
    """A checkpoint note kept outside the database, and where it came from (for messages)."""

    label: str
    note: str


@dataclass(frozen=True)
class TrailReport:
    """An intact trail: its ``events``, the newest event's ``last_hash``, the Merkle ``root``
    of all events, and how many checkpoints (stored and external) were checked against it."""

    events: int
    last_hash: str | None
    root: bytes
    checkpoints: int
    external: int
    newest: Checkpoint | None


@dataclass
class _Target:
    label: str
    checkpoint: Checkpoint
    frontier: list[str] | None = None


def _targets(
    session: Session, key: PublicKey, origin: str, external: Sequence[ExternalCheckpoint]
) -> dict[int, list[_Target]]:
    out: dict[int, list[_Target]] = {}
    rows = session.exec(select(AuditCheckpoint).order_by(col(AuditCheckpoint.size))).all()
    for row in rows:
        label = f"checkpoint {row.size} (signed {as_utc(row.at).isoformat(timespec='seconds')})"
        try:
            cp = open_checkpoint(row.note, key, origin=origin)
        except PeerError as e:
            raise _broken(f"{label}: {e.message}") from None
        if cp.size != row.size or cp.root.hex() != row.root:
            raise _broken(f"{label}: its row does not match its signed note")
        out.setdefault(cp.size, []).append(_Target(label, cp, json.loads(row.frontier)))
    for ext in external:
        try:
            cp = open_checkpoint(ext.note, key, origin=origin)
        except PeerError as e:
            raise _broken(f"{ext.label}: {e.message}") from None
        out.setdefault(cp.size, []).append(_Target(ext.label, cp))
    return out


def _check_persons(session: Session, ev: AuditEvent) -> int:
    """Recompute an audited query's person root from the index; the number of persons."""
    if '"person_root"' not in ev.detail:
        return 0
    try:
        detail = json.loads(ev.detail)
    except ValueError:
        return 0
    if not isinstance(detail, dict) or "person_root" not in detail:
        return 0
    rows = session.exec(
        select(AuditPerson).where(AuditPerson.seq == ev.seq).order_by(col(AuditPerson.position))
    ).all()
    refs = [(r.digest, r.auth_ref) for r in rows]
    if (
        len(refs) != detail.get("persons")
        or [r.position for r in rows] != list(range(len(rows)))
        or person_root(refs).hex() != detail["person_root"]
    ):
        raise _broken(f"the person index of event {ev.seq} was altered")
    return len(refs)


def verify_trail(
    session: Session,
    key: PublicKey,
    origin: str,
    *,
    external: Sequence[ExternalCheckpoint] = (),
) -> TrailReport:
    """Check the whole trail; return what holds or raise ``StoreError`` E_AUDIT naming the
    first problem met while walking the events in order:

    an event missing, altered, inserted or reordered (the hash chain); a person index row
    altered, added or removed; a checkpoint (stored or ``external``) whose signature by
    ``key`` does not verify or whose root differs from the trail's at its size (a rewritten
    trail, or a checkpoint from a fork); a checkpoint covering more events than remain (the
    tail was truncated).
    """
    targets = _targets(session, key, origin, external)
    tree = CompactRange()
    prev = GENESIS
    persons = 0
    while batch := _events_after(session, tree.size):
        for ev in batch:
            check_link(ev, prev, tree.size + 1)
            tree.append(event_leaf_hash(ev))
            prev = ev.hash
            persons += _check_persons(session, ev)
            for t in targets.get(tree.size, ()):
                if t.checkpoint.root != tree.root():
                    raise _broken(
                        f"{t.label} does not match the trail's first {tree.size} events: "
                        "the trail was rewritten, or the checkpoint is from a fork"
                    )
                if t.frontier is not None and t.frontier != [h.hex() for h in tree.hashes]:
                    raise _broken(f"{t.label}: its stored right edge was altered")
    beyond = [t for size, ts in targets.items() if size > tree.size for t in ts]
    if beyond:
        t = max(beyond, key=lambda t: t.checkpoint.size)
        raise _broken(
            f"the trail ends at event {tree.size} but {t.label} covers "
            f"{t.checkpoint.size} events: the tail was truncated"
        )
    indexed = session.exec(select(func.count()).select_from(AuditPerson)).one()
    if indexed != persons:
        raise _broken(f"the person index holds {indexed} rows, the events name {persons}")
    stored = [t for ts in targets.values() for t in ts if t.frontier is not None]
    newest = max(
        (t.checkpoint for ts in targets.values() for t in ts), key=lambda c: c.size, default=None
    )
    return TrailReport(
        events=tree.size,
        last_hash=prev if tree.size else None,
        root=tree.root(),
        checkpoints=len(stored),
        external=len(external),
        newest=newest,
    )


# ---------------------------------------------------------------------- the node's own trail


def node_public_key(node: Node) -> PublicKey:
    """The public key the node signs checkpoints with (its certificate's)."""
    key = node.chain()[0].public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise InputError("the node certificate's key is neither EC nor RSA", code="E_KEY_FORMAT")
    return key


def checkpoint_now(node: Node, now: dt.datetime) -> AuditCheckpoint | None:
    """Sign a checkpoint of the node's trail (if events were added) and publish it to
    ``[audit] checkpoint_file`` (written atomically, owner-only folder; a newer one written by
    another process is never replaced by an older one). Returns the new row or ``None``.
    Raises what :func:`make_checkpoint` raises."""
    key = node.identity()[1]
    with node.session() as s:
        row = make_checkpoint(s, key, origin_for(node.config.code), now=now)
    if row is not None:
        path = node.config.path(node.config.audit.checkpoint_file)
        private_dir(path.parent)
        current = published_checkpoint(node)
        if current is None or note_size(current.note) < row.size:
            atomic_write(path, row.note.encode(), 0o644)
    return row


def note_size(note: str) -> int:
    """The tree size a checkpoint note states, read without verifying it (-1 when it states
    none): which of two notes is newer, and what an extract was proved against."""
    lines = note.split("\n")
    return int(lines[1]) if len(lines) > 1 and lines[1].isdigit() else -1


def published_checkpoint(node: Node) -> ExternalCheckpoint | None:
    """The published checkpoint file, if there is one (checked by :func:`verify_trail`)."""
    path = node.config.path(node.config.audit.checkpoint_file)
    try:
        return ExternalCheckpoint(f"the published checkpoint {path}", path.read_text("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise _broken(f"the published checkpoint {path} cannot be read: {e}") from None
