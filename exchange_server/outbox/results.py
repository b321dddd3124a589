"""Node-signed bundles for a department's outbox: results, flagged lists, relays, reports.

:func:`deliver` is :meth:`~exchange_server.outbox.writer.Outbox.deliver` in the shape the
comparison runs call it: sealed with the node's key for one registered department, under a
deterministic name, exactly once.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from exchange_server.node import Node
from exchange_server.outbox.writer import RESULT_NAMESPACE, Outbox, result_bundle_id
from exchange_server.spool import Spool
from pki.bundle import BundleKind, Member

__all__ = ["RESULT_NAMESPACE", "deliver", "result_bundle_id"]


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

    See :meth:`Outbox.deliver` (idempotent; InputError ``E_UNKNOWN_DEPT``).
    """
    d = Outbox(node, spool).deliver(
        dept_code, name, members, kind=kind, fields=fields, now=now, bundle_id=bundle_id
    )
    return d.path, d.written
