"""Glue between the pure decisions and the node: the registry facts a decision reads, the
audit events a transition writes, and the receipt a :class:`SendReceipt` action sends."""

from __future__ import annotations

import datetime as dt
import logging

from sqlmodel import Session, col, select

from exchange_common.codes import registered_text
from exchange_common.errors import InputError
from exchange_common.timefmt import rfc3339
from exchange_server.outbox.receipts import Receipt, send_receipt
from exchange_server.outbox.writer import Outbox
from exchange_server.pipeline.decisions import (
    RegistrySnapshot,
    SenderRecord,
    SendReceipt,
    Transition,
)
from exchange_server.store.audit import EventSpec
from exchange_server.store.models import (
    Department,
    DepartmentNetwork,
    DeptState,
    SeenBundle,
    Upload,
    as_utc,
)

__all__ = ["registry_snapshot", "send_action_receipt", "transition_events"]

log = logging.getLogger("exchange_server.pipeline.runner")


def registry_snapshot(s: Session, codes: set[str], bundle_ids: list[str]) -> RegistrySnapshot:
    """The departments ``codes`` and the first sightings of ``bundle_ids``, as one snapshot."""
    depts = s.exec(select(Department).where(col(Department.code).in_(sorted(codes)))).all()
    nets: dict[str, list[str]] = {d.code: [] for d in depts}
    for code, cidr in s.exec(
        select(DepartmentNetwork.dept_code, DepartmentNetwork.cidr).where(
            col(DepartmentNetwork.dept_code).in_(sorted(codes))
        )
    ):
        nets.setdefault(code, []).append(cidr)
    seen = {
        b.bundle_id: b.upload_id
        for b in s.exec(select(SeenBundle).where(col(SeenBundle.bundle_id).in_(bundle_ids)))
    }
    return RegistrySnapshot(
        departments={
            d.code: SenderRecord(d.code, d.state == DeptState.ACTIVE.value, tuple(nets[d.code]))
            for d in depts
        },
        seen=seen,
    )


def transition_events(t: Transition) -> list[EventSpec]:
    """The audit events of a transition, as the store appends them."""
    return [EventSpec(a.actor, a.action, a.subject, dict(a.detail)) for a in t.audit]


def send_action_receipt(
    outbox: Outbox,
    row: Upload,
    action: SendReceipt | None,
    now: dt.datetime,
    *,
    sync_dir: bool = True,
) -> str | None:
    """Apply a :class:`SendReceipt`: the receipt's outbox name, or None when there is no
    registered department to send it to."""
    if action is None:
        return None
    # the registry's text for the code; the rule's own words beside it when they say more
    text = registered_text(action.code)
    receipt = Receipt(
        upload_id=row.id,
        bundle_id=row.bundle_id,
        file_name=row.file_name,
        file_sha256=row.sha256 or "",
        size=row.size,
        verdict=action.verdict.value,
        reason_code=action.code,
        reason=text or action.reason,
        explanation=action.reason if text and action.reason != text else None,
        received_at=rfc3339(as_utc(row.received_at)),
        decided_at=rfc3339(now),
        node=outbox.node.config.code,
        details=dict(action.details),
    )
    if not action.dept_code:
        log.warning("upload %s: no sender to send a receipt to", row.id)
        return None
    try:
        return send_receipt(outbox, action.dept_code, receipt, now=now, sync_dir=sync_dir).name
    except InputError as e:
        if e.code != "E_UNKNOWN_DEPT":
            raise
        log.warning(
            "upload %s: no registered department %r to send a receipt to",
            row.id,
            action.dept_code,
        )
        return None
