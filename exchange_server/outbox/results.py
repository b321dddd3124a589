"""Node-signed bundles for a department's outbox: results, flagged lists, relays, reports.

:func:`deliver` seals files for one registered department (its certificate from the registry)
with the node's key and places the bundle in its outbox under a deterministic name, so a step
repeated after a crash finds the bundle already there and writes nothing twice.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from sqlmodel import select

from exchange_common.errors import InputError
from exchange_server.node import Node
from exchange_server.spool import Spool
from exchange_server.store.models import Department
from pki.bundle import BundleKind, Member, seal_to_file

__all__ = ["RESULT_NAMESPACE", "deliver", "result_bundle_id"]

#: uuid5 namespace of bundle ids the node derives from what it answers.
RESULT_NAMESPACE = uuid.UUID("6f1c1d52-5a8e-4f4e-9d1e-7f3c2b9a0e51")


def result_bundle_id(*parts: str) -> uuid.UUID:
    """A bundle id that is a pure function of ``parts`` (e.g. the query id and a segment)."""
    return uuid.uuid5(RESULT_NAMESPACE, "/".join(parts))


def deliver(
    node: Node,
    spool: Spool,
    dept_code: str,
    name: str,
    members: Sequence[Member],
    *,
    kind: BundleKind,
    fields: Mapping[str, Any],
    bundle_id: uuid.UUID,
    now: dt.datetime,
) -> tuple[Path, bool]:
    """Seal ``members`` for ``dept_code`` into its outbox as ``name``; return (path, written).

    Idempotent: if ``name`` is already in the outbox it is kept and nothing is sealed
    (``written`` is False). The file appears complete or not at all. Raises InputError
    ``E_UNKNOWN_DEPT`` for a department that is not registered.
    """
    outbox = spool.outbox(dept_code)
    path = outbox / name
    if path.exists():
        return path, False
    with node.session(write=False) as s:
        dept = s.exec(select(Department).where(Department.code == dept_code)).first()
        if dept is None:
            raise InputError(f"department {dept_code} is not registered", code="E_UNKNOWN_DEPT")
        cert_pem = dept.cert_pem
    chain, key = node.identity()
    recipient = x509.load_pem_x509_certificates(cert_pem.encode())[0]
    try:
        seal_to_file(
            members,
            path,
            signer_key=key,
            signer_chain=chain,
            recipients=[recipient],
            kind=kind,
            fields=dict(fields),
            now=now,
            bundle_id=bundle_id,
        )
    except InputError as e:
        if e.code == "E_EXISTS":  # another process delivered it meanwhile
            return path, False
        raise
    return path, True
