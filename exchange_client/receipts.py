"""What the node's signed receipt says about a pushed bundle, ready to show (pure).

A receipt (``exchange_server/outbox/receipts.py``) carries the verdict, the reason code with the
registry's text, the node's own explanation of a refusal, and ``details``: for a data push the
rows stored and rejected by reason with masked samples (``details.dataset``), for a query its
routing and deadline (``details.query``), for an answer to a relay what was merged
(``details.answer``). The client keeps the receipt's fields in its state when it pulls it; this
module reads them back and says, in one place, what ``push --wait``, ``wait`` and ``pull`` show.

An accepted data push with rejected rows is not a plain success: its outcome is
``partly_rejected``. Every ID number that reaches a line or a JSON field here is masked again
(the node masks them already; a client shows no personal data even if a node does not).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from exchange_client.state import WAITING, PushedBundle, State
from exchange_common.codes import lookup
from exchange_common.masking import mask_id, mask_id_numbers

__all__ = [
    "ACCEPTED",
    "PARTLY_REJECTED",
    "REJECTED",
    "ReceiptReport",
    "facts",
    "receipt_report",
    "receipt_summary",
    "row_reason_text",
]

ACCEPTED = "accepted"
PARTLY_REJECTED = "partly_rejected"
REJECTED = "rejected"

#: Masked keys shown per rejection reason (the receipt may hold more; --json has them all).
SHOWN_SAMPLES = 3


@dataclass(frozen=True)
class ReceiptReport:
    """A pushed bundle's verdict as its receipt tells it. Holds no personal data."""

    bundle_id: str
    kind: str
    verdict: str  # accepted | rejected | waiting
    #: ``accepted``, ``partly_rejected`` (accepted, some rows refused), ``rejected``, ``waiting``.
    outcome: str
    reason_code: str | None = None
    #: The receipt's text for the code (the registry's peer text), else the local registry's.
    reason_text: str | None = None
    #: What exactly the node found, when it says more than ``reason_text`` (ID numbers masked).
    explanation: str | None = None
    hint: str | None = None
    receipt: str | None = None
    #: Data pushes: rows in the table, stored, refused, refused per reason code.
    rows: int | None = None
    rows_stored: int | None = None
    rows_rejected: int | None = None
    rejected_by_reason: dict[str, int] | None = None
    #: Data pushes: a few refused rows, ``{"reason": code, "key": masked ID number}``.
    rejected_samples: list[dict[str, str]] = field(default_factory=list)
    #: The receipt's ``details`` (dataset, query or answer facts), samples masked.
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The fields ``--json`` adds to a push record."""
        return {
            "outcome": self.outcome,
            "reason_text": self.reason_text,
            "explanation": self.explanation,
            "hint": self.hint,
            "receipt": self.receipt,
            "rows": self.rows,
            "rows_stored": self.rows_stored,
            "rows_rejected": self.rows_rejected,
            "rejected_by_reason": self.rejected_by_reason,
            "rejected_samples": self.rejected_samples,
            "details": self.details,
        }

    def headline(self) -> str:
        """One line: the bundle and the node's verdict."""
        if self.outcome == PARTLY_REJECTED:
            return (
                f"bundle {self.bundle_id} accepted by the node, but {self.rows_rejected} of "
                f"{self.rows} row(s) REJECTED (signed receipt verified)"
            )
        if self.outcome == ACCEPTED:
            return f"bundle {self.bundle_id} accepted by the node (signed receipt verified)"
        if self.outcome == REJECTED:
            return f"bundle {self.bundle_id} REJECTED by the node: {self.reason_code}"
        return f"bundle {self.bundle_id}: no receipt yet"

    def lines(self) -> list[str]:
        """The headline, then what the receipt says: reason text and explanation, row counts
        by reason (each with its text and a few masked keys), a query's routing, an answer's
        merge; last the hint."""
        out = [self.headline()]
        if self.reason_text:
            out.append(f"  {self.reason_text}")
        if self.explanation:
            out.append(f"  node: {self.explanation}")
        out += [f"  {line}" for line in facts(self.details, self.bundle_id)]
        if self.hint:
            out.append(f"hint: {self.hint}")
        return out


def row_reason_text(code: str) -> str | None:
    """The registry's words for a reason code, a row-level one included (``E_CODE:险种类型``
    reads as ``E_CODE``); None when it is not registered."""
    entry = lookup(code.split(":", 1)[0])
    return entry.peer_text if entry is not None else None


def _dataset_lines(d: Mapping[str, Any]) -> list[str]:
    """Counts, then one line per reason: rows, the reason's words, a few masked keys."""
    lines = [
        f"{d.get('resource')} v{d.get('version')} ({d.get('mode')}): "
        f"{d.get('stored')} of {d.get('rows')} row(s) stored, {d.get('rejected')} rejected"
    ]
    by_reason = _reasons(d)
    samples = [s for s in d.get("samples") or [] if isinstance(s, Mapping)]
    for code, n in sorted(by_reason.items(), key=lambda kv: (-_count(kv[1]), str(kv[0]))):
        keys = [mask_id(str(s.get("key") or "")) for s in samples if s.get("reason") == code]
        eg = f" e.g. {', '.join(keys[:SHOWN_SAMPLES])}" if keys else ""
        words = row_reason_text(code) or "refused by the node."
        lines.append(f"rejected {code}: {n} row(s) — {words}{eg}")
    return lines


def _query_lines(q: Mapping[str, Any], bundle_id: str | None) -> list[str]:
    resources = ", ".join(
        f"{r.get('resource')} ({'provider' if r.get('answered_by') == 'provider' else 'node'})"
        for r in q.get("routing") or []
    )
    lines = [
        f"query: {q.get('persons')} person(s); {resources or 'no resource'}; "
        f"whole verification due {q.get('due_date') or '-'}"
    ]
    if q.get("suspended"):
        lines.append(
            f"suspended: {q.get('unauthorized')} person(s) lack an authorization reference; "
            f"send them with `exchange-client push --kind supplement --field "
            f"in_reply_to={bundle_id or 'QUERY_ID'}`"
        )
    return lines


def facts(details: Mapping[str, Any], bundle_id: str | None = None) -> list[str]:
    """What a receipt's ``details`` say, one line each (no personal data)."""
    if isinstance(details.get("dataset"), Mapping):
        return _dataset_lines(details["dataset"])
    if isinstance(details.get("query"), Mapping):
        return _query_lines(details["query"], bundle_id)
    answer = details.get("answer")
    if isinstance(answer, Mapping):
        late = ", after its deadline" if answer.get("late") else ""
        return [
            f"answer to relay {answer.get('relay_id')} for {answer.get('resource')}: "
            f"{answer.get('rows')} row(s) for {answer.get('persons')} person(s) merged{late}"
        ]
    return []


def receipt_summary(fields: Mapping[str, Any]) -> str | None:
    """One line on what a pulled receipt says beyond its verdict (``pull`` prints it): a
    refusal's text and the node's explanation, a data push's rows stored and rejected by
    reason, a query's routing and deadline, an answer's merge. None when it says nothing
    more."""
    details = fields.get("details")
    answered = fields.get("bundle_id")
    said = (_text(fields.get("reason")), _text(fields.get("explanation")))
    parts = [text for text in said if text]
    if isinstance(details, Mapping):
        parts += facts(details, answered if isinstance(answered, str) else None)
    return "; ".join(parts) or None


def _masked_details(details: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(details)
    dataset = details.get("dataset")
    if isinstance(dataset, Mapping):
        out["dataset"] = {**dataset, "samples": _samples(dataset)}
    return out


def _samples(dataset: Mapping[str, Any]) -> list[dict[str, str]]:
    samples = dataset.get("samples") or []
    return [
        {"reason": str(s.get("reason")), "key": mask_id(str(s.get("key") or ""))}
        for s in samples
        if isinstance(s, Mapping)
    ]


def _receipt_fields(state: State, rec: PushedBundle) -> tuple[str | None, dict[str, Any]]:
    """The receipt that decided ``rec``'s verdict (the latest with that verdict) and its
    fields; ``(None, {})`` when none was pulled (or an old state kept no fields)."""
    for name in reversed(rec.receipts):
        item = state.pulled.get(name)
        if item is not None and item.verdict == rec.verdict:
            return name, dict(item.fields or {})
    return None, {}


def _reasons(dataset: Mapping[str, Any]) -> Mapping[str, Any]:
    reasons = dataset.get("rejects_by_reason")
    return reasons if isinstance(reasons, Mapping) else {}


def _count(value: object) -> int:
    """A count from a receipt; 0 for anything that is not a whole number (never raises)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _text(value: object) -> str | None:
    return mask_id_numbers(value) if isinstance(value, str) and value else None


def receipt_report(state: State, bundle_id: str) -> ReceiptReport:
    """What the receipt of pushed bundle ``bundle_id`` says (see :class:`ReceiptReport`).

    A bundle without a pulled receipt is ``waiting``. Raises :class:`KeyError` when this
    directory did not push ``bundle_id``.
    """
    rec = state.pushed[bundle_id]
    if rec.verdict == WAITING:
        return ReceiptReport(rec.bundle_id, rec.kind, rec.verdict, WAITING)
    name, fields = _receipt_fields(state, rec)
    raw = fields.get("details")
    details = _masked_details(raw) if isinstance(raw, Mapping) else {}
    entry = lookup(rec.reason_code)
    dataset = details.get("dataset") if isinstance(details.get("dataset"), Mapping) else None
    rows = stored = rejected = None
    by_reason: dict[str, int] | None = None
    samples: list[dict[str, str]] = []
    if dataset is not None:
        rows, stored, rejected = (_count(dataset.get(k)) for k in ("rows", "stored", "rejected"))
        by_reason = {str(k): _count(v) for k, v in _reasons(dataset).items()}
        samples = dataset["samples"]
    elif rec.kind == "data" and rec.verdict == REJECTED:
        stored = 0  # a refused bundle stores nothing; the node does not count its rows then
    accepted = rec.verdict == ACCEPTED
    outcome = (PARTLY_REJECTED if rejected else ACCEPTED) if accepted else REJECTED
    hint = entry.operator_hint if entry is not None and not accepted else None
    if outcome == PARTLY_REJECTED:
        hint = (
            "correct the rejected rows and push them again (--field mode=increment adds them); "
            "keep the published catalog as DIR/catalog.toml so the client finds such rows "
            "before sealing"
        )
    return ReceiptReport(
        bundle_id=rec.bundle_id,
        kind=rec.kind,
        verdict=rec.verdict,
        outcome=outcome,
        reason_code=rec.reason_code,
        reason_text=_text(fields.get("reason")) or (entry.peer_text if entry else None),
        explanation=_text(fields.get("explanation")),
        hint=hint,
        receipt=name,
        rows=rows,
        rows_stored=stored,
        rows_rejected=rejected,
        rejected_by_reason=by_reason,
        rejected_samples=samples,
        details=details,
    )
