"""Audit extracts an inspector verifies offline: the encoding of audit leaves, and the check.

The node's audit trail is an RFC 9162 Merkle tree (:mod:`pki.merkle`) with one leaf per event;
its signed checkpoints are C2SP notes (:mod:`pki.checkpoint`). ``exchange-server audit export``
writes a JSON extract (schema :data:`EXTRACT_SCHEMA`) holding selected events, each with its
inclusion proof to one checkpoint, the node's certificate chain and, for a person search, each
query's proof that the person's keyed digest is among its persons. :func:`verify_extract`
checks all of it with nothing but the extract and the ministry's root certificate.

Leaf encodings (one rule, used by the node when it builds the tree and here when checking it):

- an event: UTF-8 JSON array ``[seq, at, actor, action, subject, detail]`` (``at`` in ISO 8601
  UTC as stored, ``detail`` the stored JSON text), written with ``ensure_ascii=False`` and
  ``json.dumps``'s default separators;
- a person of a query: UTF-8 JSON array ``[digest, authorization]``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from exchange_common.errors import PeerError
from pki.checkpoint import Checkpoint, open_checkpoint
from pki.identity import Role
from pki.merkle import leaf_hash, verify_consistency, verify_inclusion
from pki.verify import TrustStore, verify_certificate

__all__ = [
    "EXTRACT_SCHEMA",
    "ExtractReport",
    "event_leaf",
    "person_leaf",
    "verify_extract",
]

EXTRACT_SCHEMA = "exchange-audit-extract/1"
#: An extract holding more events than this is refused before any work (an inspector's extract
#: is a selection; the whole trail is verified on the node with ``audit verify``).
MAX_EXTRACT_EVENTS = 1_000_000


def event_leaf(
    seq: int, at: str, actor: str, action: str, subject: str | None, detail: str
) -> bytes:
    """The leaf data of one audit event (see the module docstring)."""
    return json.dumps([seq, at, actor, action, subject, detail], ensure_ascii=False).encode()


def person_leaf(digest: str, authorization: str | None) -> bytes:
    """The leaf data of one person in a query's ``person_root`` tree."""
    return json.dumps([digest, authorization], ensure_ascii=False).encode()


def _bad(why: str) -> PeerError:
    return PeerError(f"audit extract refused: {why}", code="E_EXTRACT")


@dataclass(frozen=True)
class ExtractReport:
    """What a verified extract proves: ``events`` under ``checkpoint``, signed by ``signer``
    (the node certificate's subject), and, when an older checkpoint was given, that the log
    only grew since (``consistent_from`` is its size)."""

    checkpoint: Checkpoint
    events: int
    persons: int
    signer: str
    consistent_from: int | None


def _hashes(value: Any, what: str) -> list[bytes]:
    if not isinstance(value, list) or len(value) > 64:
        raise _bad(f"{what} is not a list of at most 64 hashes")
    try:
        out = [bytes.fromhex(h) for h in value]
    except (TypeError, ValueError):
        raise _bad(f"{what} holds something that is not a hex hash") from None
    if any(len(h) != 32 for h in out):
        raise _bad(f"{what} holds a hash that is not 32 bytes")
    return out


def _int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _bad(f"{what} is not a non-negative integer")
    return value


def _str(value: Any, what: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise _bad(f"{what} is not text")
    return value


def _check_event(ev: Mapping[str, Any], cp: Checkpoint) -> int:
    seq = _int(ev.get("seq"), "an event's seq")
    leaf = event_leaf(
        seq,
        str(_str(ev.get("at"), f"event {seq}'s time")),
        str(_str(ev.get("actor"), f"event {seq}'s actor")),
        str(_str(ev.get("action"), f"event {seq}'s action")),
        _str(ev.get("subject"), f"event {seq}'s subject", optional=True),
        str(_str(ev.get("detail"), f"event {seq}'s detail")),
    )
    proof = _hashes(ev.get("proof"), f"event {seq}'s proof")
    if not 1 <= seq <= cp.size or not verify_inclusion(
        leaf_hash(leaf), seq - 1, cp.size, proof, cp.root
    ):
        raise _bad(f"event {seq} is not in the checkpointed trail (altered, or not the node's)")
    person = ev.get("person")
    if person is None:
        return 0
    if not isinstance(person, Mapping):
        raise _bad(f"event {seq}'s person proof is not an object")
    try:
        detail = json.loads(str(ev["detail"]))
        root = bytes.fromhex(detail["person_root"])
        count = _int(detail["persons"], f"event {seq}'s person count")
    except (ValueError, KeyError, TypeError):
        raise _bad(f"event {seq} has no person_root to prove a person against") from None
    p_leaf = person_leaf(
        str(_str(person.get("digest"), f"event {seq}'s person digest")),
        _str(person.get("authorization"), f"event {seq}'s authorization", optional=True),
    )
    position = _int(person.get("position"), f"event {seq}'s person position")
    p_proof = _hashes(person.get("proof"), f"event {seq}'s person proof")
    if not verify_inclusion(leaf_hash(p_leaf), position, count, p_proof, root):
        raise _bad(f"event {seq}: the person is not among the query's persons")
    return 1


def verify_extract(
    doc: Mapping[str, Any],
    trust: TrustStore,
    *,
    now: dt.datetime,
    require_crl: bool = True,
    older: str | None = None,
) -> ExtractReport:
    """Verify an audit extract offline.

    Checks, in order: the schema; the node certificate chain against ``trust`` (role node;
    revocation unless ``require_crl`` is false); the checkpoint note's signature by that
    certificate's key and its origin; every event's inclusion proof (and person proof); and,
    when ``older`` (an earlier checkpoint note the inspector kept) is given, the extract's
    consistency proof from it. Raises ``PeerError`` ``E_EXTRACT`` naming the first event or part
    that fails, ``E_CHECKPOINT`` for a checkpoint note that does not verify, or the
    ``CertificateError`` of the chain.
    """
    if doc.get("schema") != EXTRACT_SCHEMA:
        raise _bad(f"schema is {doc.get('schema')!r}, not {EXTRACT_SCHEMA!r}")
    try:
        chain = x509.load_pem_x509_certificates(str(doc.get("certificate", "")).encode())
    except ValueError:
        raise _bad("its certificate is not PEM") from None
    identity = verify_certificate(
        chain[0], trust, now=now, chain=chain[1:], role=Role.NODE, require_crl=require_crl
    )
    key = chain[0].public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise _bad("the node certificate's key is neither EC nor RSA")
    origin = str(_str(doc.get("origin"), "origin"))
    cp = open_checkpoint(str(_str(doc.get("checkpoint"), "checkpoint")), key, origin=origin)
    events = doc.get("events")
    if not isinstance(events, list) or len(events) > MAX_EXTRACT_EVENTS:
        raise _bad(f"events is not a list of at most {MAX_EXTRACT_EVENTS}")
    persons = 0
    for ev in events:
        if not isinstance(ev, Mapping):
            raise _bad("an event is not an object")
        persons += _check_event(ev, cp)
    consistent_from = None
    if older is not None:
        old = open_checkpoint(older, key, origin=origin)
        consistent_from = _check_consistency(doc.get("consistency"), old, cp)
    return ExtractReport(
        cp, len(events), persons, f"{identity.name} ({identity.code})", consistent_from
    )


def _check_consistency(value: Any, old: Checkpoint, cp: Checkpoint) -> int:
    if not isinstance(value, Mapping) or value.get("from_size") != old.size:
        raise _bad(
            f"it carries no consistency proof from the given checkpoint (size {old.size}); "
            "export it with --consistency-from"
        )
    proof: Sequence[bytes] = _hashes(value.get("proof"), "the consistency proof")
    if not verify_consistency(old.size, old.root, cp.size, cp.root, proof):
        raise _bad(
            f"the checkpoint of size {old.size} is not a prefix of this one (size {cp.size}): "
            "the trail was rewritten or forked"
        )
    return old.size
