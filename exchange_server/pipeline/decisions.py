"""The pipeline's decisions, as one pure function: what happens to an upload next.

Every change of an upload's state is decided here, and only here, by :func:`decide`: it takes
what is known about the upload (:class:`UploadFacts`), one thing that just happened to it (an
:data:`Event`: its bundle verified or not, its review passed or refused, its routing done), a
snapshot of the registry (:class:`RegistrySnapshot`) and ``now``, and returns a
:class:`Transition`: the next state, the reason code of a refusal, the audit events to append
and the actions the runner must take on the spool and the outbox. It reads no clock, no disk
and no database, so every transition is tested from a table (python-tuf's trusted-metadata
set is the model); :mod:`exchange_server.pipeline.runner` gathers the facts and applies the
transitions.

The whole transition table (state, event → next state)::

    received  --BundleInvalid-->  rejected   quarantine, rejection receipt
    received  --BundleVerified--> accepted   first sight of the bundle id recorded, bundle stored
                                  rejected   E_SIGNER, E_SENDER, E_ADDRESS, E_RECIPIENT, E_REPLAY
    accepted  --ReviewPassed-->   accepted   "accepted" receipt
    accepted  --ReviewRefused-->  rejected   stored bundle quarantined, rejection receipt
    accepted  --Routed(done)-->   done       nothing more to do (a dataset stored, a query answered)
    accepted  --Routed(waiting)-> routed     waits for something else (a provider's answer)
    routed    --QueryClosed-->    done       the query's final segment was delivered

``rejected`` and ``done`` take no event. Any other pair raises :class:`InvalidTransition`: a node fault, never a
peer's. The sender of a drop-folder bundle is its signer (there is no login to compare).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from exchange_common.net import in_networks
from exchange_server.store.models import BundleState, Upload

__all__ = [
    "TRANSITIONS",
    "Action",
    "AuditSpec",
    "BundleFacts",
    "BundleInvalid",
    "BundleVerified",
    "Event",
    "InvalidTransition",
    "Quarantine",
    "QueryClosed",
    "RecordSeen",
    "RegistrySnapshot",
    "ReviewPassed",
    "ReviewRefused",
    "Routed",
    "SendReceipt",
    "SenderRecord",
    "StoreBundle",
    "Transition",
    "UploadFacts",
    "Verdict",
    "decide",
]


class Verdict(StrEnum):
    """A receipt's verdict."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"


# --- facts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadFacts:
    """What the store records of an upload when a decision is taken."""

    id: str
    state: BundleState
    #: The department that uploaded (the SFTP login), or the drop folder's placeholder.
    dept_code: str
    #: ``sftp`` or ``drop``.
    source: str
    remote_addr: str | None
    bundle_id: str | None = None
    kind: str | None = None
    sha256: str | None = None

    @classmethod
    def of(cls, row: Upload) -> UploadFacts:
        """The facts of an upload record."""
        return cls(
            id=row.id,
            state=BundleState(row.state),
            dept_code=row.dept_code,
            source=row.source,
            remote_addr=row.remote_addr,
            bundle_id=row.bundle_id,
            kind=row.kind,
            sha256=row.sha256,
        )


@dataclass(frozen=True)
class BundleFacts:
    """What cryptographic verification established about an upload's bundle."""

    bundle_id: str
    kind: str
    #: The department code in the signer's certificate.
    signer: str
    sha256: str
    #: Whether the node's certificate is among the bundle's recipients.
    addressed_to_node: bool


@dataclass(frozen=True)
class SenderRecord:
    """One department as the registry holds it when the decision is taken."""

    code: str
    active: bool
    networks: tuple[str, ...] = ()


@dataclass(frozen=True)
class RegistrySnapshot:
    """The registry and the replay guard, read in the transaction that applies the decision."""

    departments: Mapping[str, SenderRecord] = field(default_factory=dict)
    #: bundle id -> the upload in which it was first accepted.
    seen: Mapping[str, str] = field(default_factory=dict)


# --- events --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BundleInvalid:
    """Cryptographic verification (format, signature, chain, CRL, decryption) failed."""

    code: str
    reason: str
    detail: str | None = None


@dataclass(frozen=True)
class BundleVerified:
    """Cryptographic verification succeeded: the registry and replay checks come next."""

    bundle: BundleFacts


@dataclass(frozen=True)
class ReviewPassed:
    """The catalog review (formal review, dataset ingest) accepted the bundle."""

    #: Facts for the receipt (counts, codes: no personal data).
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReviewRefused:
    """The catalog review refused the bundle."""

    code: str
    reason: str
    detail: str | None = None


@dataclass(frozen=True)
class Routed:
    """Routing finished: ``waiting`` when the bundle now waits for something else."""

    waiting: bool


@dataclass(frozen=True)
class QueryClosed:
    """A waiting query's final result segment was delivered (:mod:`.queries`)."""


Event = BundleInvalid | BundleVerified | ReviewPassed | ReviewRefused | Routed | QueryClosed


# --- outputs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditSpec:
    """One audit event to append (actor, action, subject, detail)."""

    actor: str
    action: str
    subject: str | None
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordSeen:
    """Record the first acceptance of ``bundle_id`` (the replay guard's key)."""

    bundle_id: str


@dataclass(frozen=True)
class StoreBundle:
    """Move the upload from ``incoming/`` to ``store/<bundle_id>.bundle``."""

    bundle_id: str


@dataclass(frozen=True)
class Quarantine:
    """Move the upload's file (incoming or stored) to ``quarantine/<upload_id>``."""


@dataclass(frozen=True)
class SendReceipt:
    """Seal a receipt for ``dept_code`` into its outbox, exactly once per upload."""

    dept_code: str
    verdict: Verdict
    code: str | None = None
    reason: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


Action = RecordSeen | StoreBundle | Quarantine | SendReceipt


@dataclass(frozen=True)
class Transition:
    """The outcome of one decision: apply ``actions`` in order, then record ``state``."""

    state: BundleState
    #: The upload's department after the decision (a drop-folder bundle takes its signer's).
    dept_code: str
    bundle: BundleFacts | None = None
    code: str | None = None
    #: The precise cause of a refusal, for the local log and the store (never sent to a peer).
    detail: str | None = None
    audit: tuple[AuditSpec, ...] = ()
    actions: tuple[Action, ...] = ()

    @property
    def receipt(self) -> SendReceipt | None:
        """The receipt this transition sends, if any."""
        return next((a for a in self.actions if isinstance(a, SendReceipt)), None)


class InvalidTransition(Exception):
    """An event that cannot happen in the upload's state: a node fault, not a peer's."""


# --- the rules -----------------------------------------------------------------------------


def _reject(
    upload: UploadFacts,
    dept: str,
    code: str,
    reason: str,
    detail: str | None,
    bundle: BundleFacts | None = None,
) -> Transition:
    subject = bundle.bundle_id if bundle is not None else upload.bundle_id
    return Transition(
        state=BundleState.REJECTED,
        dept_code=dept,
        bundle=bundle,
        code=code,
        detail=detail or reason,
        audit=(
            AuditSpec(dept or "?", "bundle.rejected", subject, {"upload": upload.id, "code": code}),
        ),
        actions=(Quarantine(), SendReceipt(dept, Verdict.REJECTED, code, reason)),
    )


def _on_invalid(upload: UploadFacts, ev: BundleInvalid, reg: RegistrySnapshot) -> Transition:
    return _reject(upload, upload.dept_code, ev.code, ev.reason, ev.detail)


def _sender_refusal(
    upload: UploadFacts, b: BundleFacts, dept: str, reg: RegistrySnapshot
) -> tuple[str, str, str] | None:
    """The first registry or replay check ``b`` fails: (code, reason, detail), else None."""
    if b.signer != dept:
        return "E_SIGNER", "bundle signed by another department", f"signer {b.signer} != {dept}"
    record = reg.departments.get(b.signer)
    if record is None or not record.active:
        return (
            "E_SENDER",
            "sender is not an active registered department",
            f"department {b.signer} unknown or disabled",
        )
    if upload.remote_addr is not None and not in_networks(upload.remote_addr, record.networks):
        return (
            "E_ADDRESS",
            "upload came from an address not registered for the sender",
            f"{upload.remote_addr} not in {list(record.networks)}",
        )
    if not b.addressed_to_node:
        return (
            "E_RECIPIENT",
            "bundle is not addressed to this node",
            "node certificate not among recipients",
        )
    first = reg.seen.get(b.bundle_id)
    if first is not None and first != upload.id:
        return (
            "E_REPLAY",
            "bundle was already received",
            f"bundle {b.bundle_id} first seen in upload {first}",
        )
    return None


def _on_verified(upload: UploadFacts, ev: BundleVerified, reg: RegistrySnapshot) -> Transition:
    b = ev.bundle
    # From the drop folder there is no login to compare with: the signer is the sender.
    dept = b.signer if upload.source == "drop" else upload.dept_code
    refusal = _sender_refusal(upload, b, dept, reg)
    if refusal is not None:
        return _reject(upload, dept, *refusal, bundle=b)
    first_sight = reg.seen.get(b.bundle_id) is None
    return Transition(
        state=BundleState.ACCEPTED,
        dept_code=dept,
        bundle=b,
        audit=(
            AuditSpec(
                dept,
                "bundle.accepted",
                b.bundle_id,
                {"upload": upload.id, "kind": b.kind, "sha256": b.sha256},
            ),
        ),
        actions=((RecordSeen(b.bundle_id),) if first_sight else ()) + (StoreBundle(b.bundle_id),),
    )


def _on_review_passed(upload: UploadFacts, ev: ReviewPassed, reg: RegistrySnapshot) -> Transition:
    assert upload.bundle_id is not None  # accepted uploads always have one
    return Transition(
        state=BundleState.ACCEPTED,
        dept_code=upload.dept_code,
        actions=(SendReceipt(upload.dept_code, Verdict.ACCEPTED, details=dict(ev.details)),),
    )


def _on_review_refused(upload: UploadFacts, ev: ReviewRefused, reg: RegistrySnapshot) -> Transition:
    return _reject(upload, upload.dept_code, ev.code, ev.reason, ev.detail)


def _on_routed(upload: UploadFacts, ev: Routed, reg: RegistrySnapshot) -> Transition:
    state = BundleState.ROUTED if ev.waiting else BundleState.DONE
    outcome = "waiting" if ev.waiting else "done"
    return Transition(
        state=state,
        dept_code=upload.dept_code,
        audit=(AuditSpec("node", f"bundle.{outcome}", upload.bundle_id, {"upload": upload.id}),),
    )


def _on_query_closed(upload: UploadFacts, ev: QueryClosed, reg: RegistrySnapshot) -> Transition:
    return Transition(
        state=BundleState.DONE,
        dept_code=upload.dept_code,
        audit=(AuditSpec("node", "bundle.done", upload.bundle_id, {"upload": upload.id}),),
    )


_Handler = Callable[[UploadFacts, Any, RegistrySnapshot], Transition]

#: (state, event type) -> the rule deciding that transition: the whole table.
TRANSITIONS: Mapping[tuple[BundleState, type], _Handler] = {
    (BundleState.RECEIVED, BundleInvalid): _on_invalid,
    (BundleState.RECEIVED, BundleVerified): _on_verified,
    (BundleState.ACCEPTED, ReviewPassed): _on_review_passed,
    (BundleState.ACCEPTED, ReviewRefused): _on_review_refused,
    (BundleState.ACCEPTED, Routed): _on_routed,
    (BundleState.ROUTED, QueryClosed): _on_query_closed,
}


def decide(
    upload: UploadFacts, event: Event, registry: RegistrySnapshot, now: dt.datetime
) -> Transition:
    """The transition ``event`` causes for ``upload``; pure and deterministic.

    ``now`` is the decision's time (the runner stamps records and receipts with it).
    Raises :class:`InvalidTransition` when the table has no entry for the upload's state and
    the event (the upload is final, or the event belongs to another state).
    """
    del now  # no rule depends on the time yet; deadlines will (working days)
    handler = TRANSITIONS.get((upload.state, type(event)))
    if handler is None:
        raise InvalidTransition(
            f"upload {upload.id}: no transition from {upload.state.value} on {type(event).__name__}"
        )
    return handler(upload, event, registry)
