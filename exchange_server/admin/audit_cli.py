"""``exchange-server audit``: read and verify the hash-chained audit trail (办法 第十九条).

A slice of issue "The administrator's node": ``audit verify`` walks the whole chain and names
the first event that was altered, deleted, inserted or reordered; ``audit list`` shows the
newest events, filtered. Signed checkpoints, Merkle proofs and exports (which also detect a
truncated tail) come later. Details are printed masked (:func:`exchange_common.masking.mask_id_numbers`).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any

import typer
from sqlmodel import col, select

from exchange_common.cli import console, emit_json, fail_on_error
from exchange_common.errors import InputError, StoreError
from exchange_common.masking import mask_id_numbers
from exchange_server.admin.cli_shared import HomeOpt, JsonOpt, _node, command_group
from exchange_server.store.audit import verify_chain
from exchange_server.store.models import AuditEvent, as_utc

__all__ = ["audit_app"]

#: The ``--json`` schemas (a field added keeps the version; a field changed bumps it).
VERIFY_SCHEMA = "exchange-audit-verify/1"
LIST_SCHEMA = "exchange-audit-list/1"

audit_app = command_group("audit", "Read and verify the node's hash-chained audit trail.")


def _event(ev: AuditEvent) -> dict[str, Any]:
    try:
        detail: Any = json.loads(mask_id_numbers(ev.detail))
    except ValueError:
        detail = mask_id_numbers(ev.detail)
    return {
        "seq": ev.seq,
        "at": as_utc(ev.at).isoformat(timespec="seconds"),
        "actor": ev.actor,
        "action": ev.action,
        "subject": mask_id_numbers(ev.subject) if ev.subject else None,
        "detail": detail,
        "hash": ev.hash,
    }


@audit_app.command("verify")
@fail_on_error
def verify(home: HomeOpt, json_out: JsonOpt = False) -> None:
    """Walk the whole audit trail and check every event's hash and link.

    Exit 0 when the chain is intact; 1 when it is broken, naming the first event that was
    altered, or missing (deleted, or the events reordered). A truncated tail is not detected
    yet (it needs the signed checkpoints still to come).

    **Examples**

        exchange-server audit verify --home /srv/node

        exchange-server audit verify --home /srv/node --json
    """
    node = _node(home)
    with node.session(write=False) as s:
        try:
            count, problem = verify_chain(s), None
        except StoreError as e:
            count, problem = None, e.message
        last = s.exec(select(AuditEvent).order_by(col(AuditEvent.seq).desc()).limit(1)).first()
    newest = _event(last) if last is not None else None
    doc = {
        "schema": VERIFY_SCHEMA,
        "intact": problem is None,
        "events": count,
        "problem": problem,
        "last": newest,
    }
    if json_out:
        emit_json(doc)
    elif problem is None:
        tail = f", the last {newest['at']} {newest['hash'][:16]}…" if newest else ""
        console.print(f"audit trail intact: {count} events{tail}")
    else:
        console.print(f"[red]{problem}[/red] (E_AUDIT)", highlight=False)
    if problem is not None:
        raise typer.Exit(1)


@audit_app.command("list")
@fail_on_error
def list_events(
    home: HomeOpt,
    action: Annotated[
        str | None, typer.Option(help="Only this action, e.g. login.refused.")
    ] = None,
    subject: Annotated[
        str | None, typer.Option(help="Only this subject (department, bundle or upload id).")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Only events at or after this time (ISO 8601, UTC if bare).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="At most this many.")] = 50,
    json_out: JsonOpt = False,
) -> None:
    """The newest audit events, newest first, with their details masked.

    **Examples**

        exchange-server audit list --home /srv/node --limit 20

        exchange-server audit list --home /srv/node --action bundle.rejected --since 2026-12-01

        exchange-server audit list --home /srv/node --subject MZ330100 --json
    """
    q = select(AuditEvent)
    if action is not None:
        q = q.where(AuditEvent.action == action)
    if subject is not None:
        q = q.where(AuditEvent.subject == subject)
    if since is not None:
        try:
            start = dt.datetime.fromisoformat(since)
        except ValueError:
            raise InputError(
                f"--since {since!r} is not an ISO 8601 date or time", code="E_USAGE"
            ) from None
        q = q.where(col(AuditEvent.at) >= as_utc(start))
    node = _node(home)
    with node.session(write=False) as s:
        events = [_event(e) for e in s.exec(q.order_by(col(AuditEvent.seq).desc()).limit(limit))]
    if json_out:
        emit_json({"schema": LIST_SCHEMA, "events": events})
        return
    if not events:
        console.print("no audit events match")
    for e in events:
        detail = json.dumps(e["detail"], ensure_ascii=False, sort_keys=True)
        console.print(
            f"{e['seq']:>8} {e['at']} {e['actor']:<8} {e['action']:<22} "
            f"{e['subject'] or '-'} {detail}",
            highlight=False,
            markup=False,
        )
