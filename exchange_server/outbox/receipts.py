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
``reason``        the opaque human text for that code
``received_at``   when the upload completed (RFC 3339 UTC)
``decided_at``    when the node decided
``node``          the node's code
================  =============================================================

Anyone holding the trust root can check the node's signature without any private key
(``exchange-pki bundle verify --trust root.pem receipt-....bundle``).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from exchange_common.fs import fsync_dir
from pki.bundle import Member, seal
from pki.keys import PrivateKey

__all__ = ["Receipt", "receipt_name", "write_receipt"]


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

    def to_json(self) -> dict[str, object]:
        """Plain JSON object of the receipt."""
        return asdict(self)


def receipt_name(upload_id: str) -> str:
    """File name of the receipt for ``upload_id`` (deterministic: at most one per upload)."""
    return f"receipt-{upload_id}.bundle"


def write_receipt(
    outbox: Path,
    receipt: Receipt,
    *,
    recipient: x509.Certificate,
    node_chain: Sequence[x509.Certificate],
    node_key: PrivateKey,
    now: dt.datetime,
    sync_dir: bool = True,
) -> tuple[str, bool]:
    """Seal ``receipt`` for ``recipient`` into ``outbox``; return (name, newly written).

    Idempotent: if the receipt file already exists (a crash after writing it, before the state
    was recorded), it is kept and nothing new is written, so a department never gets two
    receipts for one upload. The file appears atomically and complete (written and fsynced
    under a temporary name, then hard-linked exclusively). With ``sync_dir=False`` the caller
    promises to fsync ``outbox`` before it records the receipt as sent (batches do it once).
    """
    name = receipt_name(receipt.upload_id)
    final = outbox / name
    if final.exists():
        return name, False
    body = json.dumps(receipt.to_json(), ensure_ascii=False, sort_keys=True, indent=2).encode()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=outbox)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            seal(
                [
                    Member(
                        "receipt.json",
                        io.BytesIO(body),
                        size=len(body),
                        media_type="application/json",
                    )
                ],
                fh,
                signer_key=node_key,
                signer_chain=list(node_chain),
                recipients=[recipient],
                kind="receipt",
                fields=receipt.to_json(),
                now=now,
            )
            fh.flush()
            os.fsync(fh.fileno())
        tmp.chmod(0o644)
        try:
            os.link(tmp, final)  # exclusive: never replaces a receipt that appeared meanwhile
        except FileExistsError:
            return name, False
    finally:
        tmp.unlink(missing_ok=True)
    if sync_dir:
        fsync_dir(outbox)
    return name, True
