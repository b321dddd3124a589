"""Signed receipts: the node's non-repudiable answer to every upload (like AS2's signed MDN).

A receipt is a sealed bundle of kind ``receipt``, signed by the node and encrypted to the
department that uploaded, placed in that department's outbox as ``receipt-<UPLOAD>.bundle``.
Its manifest ``fields`` and its one member ``receipt.json`` carry the same record:

================  =============================================================
``upload_id``     the node's id for the upload (one receipt per upload, ever)
``bundle_id``     the bundle's id when it could be read, else null
``file_name``     the name the department uploaded under
``file_sha256``   SHA-256 of the file exactly as received
``size``          bytes received
``verdict``       ``accepted`` or ``rejected``
``reason_code``   stable code (``E_SIGNATURE``, ``E_REPLAY``, ...) when rejected
``reason``        the registry's peer-facing text for that code (docs/reason-codes.md)
``explanation``   what exactly the node found, when it says more than ``reason`` (e.g. "the
                  application states 5 persons, the table holds 4"); never personal data
``received_at``   when the upload completed (RFC 3339 UTC)
``decided_at``    when the node decided
``node``          the node's code
``details``       what the node's review found (counts, codes: no personal data)
================  =============================================================

Receipts are delivered through :class:`~exchange_server.outbox.writer.Outbox`, the node's one
outbox writer: at most one receipt per upload, ever, whatever crashes in between.

Anyone holding the trust root can check the node's signature without any private key
(``exchange-pki bundle verify --trust root.pem receipt-....bundle``).
"""

from __future__ import annotations

import datetime as dt
import io
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from exchange_server.outbox.writer import Delivery, Outbox, result_bundle_id
from pki.bundle import BundleKind, Member

__all__ = ["Receipt", "receipt_name", "send_receipt"]


@dataclass(frozen=True)
class Receipt:
    """The facts a receipt attests."""

    upload_id: str
    bundle_id: str | None
    file_name: str
    file_sha256: str
    size: int
    verdict: str
    reason_code: str | None
    reason: str | None
    received_at: str
    decided_at: str
    node: str
    #: What the node's review found, e.g. a dataset's row counts and rejects (no personal data).
    details: dict[str, Any] = field(default_factory=dict)
    #: The refusal's own words when they say more than ``reason`` (no personal data).
    explanation: str | None = None

    def to_json(self) -> dict[str, object]:
        """Plain JSON object of the receipt."""
        return asdict(self)


def receipt_name(upload_id: str) -> str:
    """File name of the receipt for ``upload_id`` (deterministic: at most one per upload)."""
    return f"receipt-{upload_id}.bundle"


def send_receipt(
    outbox: Outbox,
    dept_code: str,
    receipt: Receipt,
    *,
    now: dt.datetime,
    sync_dir: bool = True,
) -> Delivery:
    """Seal ``receipt`` for ``dept_code`` into its outbox, once per upload.

    If the receipt is already there (a crash after writing it, before the state was recorded)
    it is kept and nothing new is written, so a department never gets two receipts for one
    upload. See :meth:`Outbox.deliver` for ``sync_dir`` and the errors it raises.
    """
    body = json.dumps(receipt.to_json(), ensure_ascii=False, sort_keys=True, indent=2).encode()
    member = Member("receipt.json", io.BytesIO(body), size=len(body), media_type="application/json")
    return outbox.deliver(
        dept_code,
        receipt_name(receipt.upload_id),
        [member],
        kind=BundleKind.RECEIPT,
        fields=receipt.to_json(),
        now=now,
        bundle_id=result_bundle_id("receipt", receipt.upload_id),
        sync_dir=sync_dir,
    )
