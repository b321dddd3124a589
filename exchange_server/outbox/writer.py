"""The one way the node places a bundle in a department's outbox: sealed, named, exactly once.

Receipts, query results, comparison lists (and next relays and notices) all go through
:meth:`Outbox.deliver`: it looks the department's certificate up in the registry, seals the
members with the node's key to that certificate, and makes the bundle appear under ``name``
atomically and exclusively (written and fsynced under a temporary name, then hard-linked), so
a step repeated after a crash, or run by two node processes at once, finds the bundle already
there and writes nothing twice. Names are the caller's exactly-once key: one receipt per
upload (``receipt-<UPLOAD>.bundle``), one result per query, one list per rule run.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from exchange_common.errors import InputError
from exchange_common.fs import atomic_output
from exchange_server.node import Node
from exchange_server.spool import Spool
from exchange_server.store.registry import department_certificate
from pki.bundle import BundleKind, Member, seal

__all__ = ["RESULT_NAMESPACE", "Delivery", "Outbox", "result_bundle_id"]

#: uuid5 namespace of bundle ids the node derives from what it answers.
RESULT_NAMESPACE = uuid.UUID("6f1c1d52-5a8e-4f4e-9d1e-7f3c2b9a0e51")


def result_bundle_id(*parts: str) -> uuid.UUID:
    """A bundle id that is a pure function of ``parts`` (e.g. the query id and a segment)."""
    return uuid.uuid5(RESULT_NAMESPACE, "/".join(parts))


@dataclass(frozen=True)
class Delivery:
    """Where a bundle is, and whether this call wrote it (False: it was already there)."""

    path: Path
    written: bool

    @property
    def name(self) -> str:
        """The bundle's file name in the outbox."""
        return self.path.name


class Outbox:
    """Department outboxes of one node, written only through :meth:`deliver`."""

    def __init__(self, node: Node, spool: Spool) -> None:
        self.node = node
        self.spool = spool

    def path(self, dept_code: str, name: str) -> Path:
        """Where ``name`` lies in ``dept_code``'s outbox (the folder is created if missing)."""
        return self.spool.outbox(dept_code) / name

    def recipient(self, dept_code: str) -> x509.Certificate:
        """The registered certificate of ``dept_code``; InputError ``E_UNKNOWN_DEPT`` if none."""
        with self.node.session(write=False) as s:
            cert = department_certificate(s, dept_code)
        if cert is None:
            raise InputError(f"department {dept_code} is not registered", code="E_UNKNOWN_DEPT")
        return cert

    def deliver(
        self,
        dept_code: str,
        name: str,
        members: Sequence[Member],
        *,
        kind: BundleKind | str,
        fields: Mapping[str, Any],
        now: dt.datetime,
        bundle_id: uuid.UUID | None = None,
        sync_dir: bool = True,
    ) -> Delivery:
        """Seal ``members`` for ``dept_code`` into its outbox as ``name``, exactly once.

        If ``name`` is already there (a crash after writing it, or another process), it is
        kept and nothing is sealed: ``written`` is False. The file appears complete or not at
        all. ``bundle_id`` defaults to one derived from the department and ``name``, so a
        repeated delivery would carry the same id. With ``sync_dir=False`` the caller promises
        to fsync the outbox folder before it records the delivery (a batch pays one fsync).
        Raises InputError ``E_UNKNOWN_DEPT`` for a department that is not registered.
        """
        path = self.path(dept_code, name)
        if path.exists():
            return Delivery(path, False)
        recipient = self.recipient(dept_code)
        chain, key = self.node.identity()
        try:
            with atomic_output(path, 0o644, exclusive=True, sync_dir=sync_dir) as fh:
                seal(
                    members,
                    fh,
                    signer_key=key,
                    signer_chain=list(chain),
                    recipients=[recipient],
                    kind=kind,
                    fields=dict(fields),
                    now=now,
                    bundle_id=bundle_id or result_bundle_id("outbox", dept_code, name),
                )
        except FileExistsError:  # another process delivered it meanwhile
            return Delivery(path, False)
        return Delivery(path, True)
