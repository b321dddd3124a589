"""``exchange-server query``: where every query stands, and the administrator's deadline decisions.

Read-only views (``list``, ``show``) come from the query book; ``extend`` and ``terminate`` are
decisions recorded with who took them and why, notified to the parties (浙江 四(一)3); ``tick``
runs the deadline check the pipeline process runs every ``[deadlines] tick_seconds``. Output
shows codes, states and dates only: never an ID number or a name.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from exchange_common.cli import console, emit_json, fail_on_error, parse_time
from exchange_common.errors import InputError
from exchange_server.admin.cli_shared import HomeOpt, JsonOpt, command_group
from exchange_server.node import Node
from exchange_server.pipeline.assembly import node_spool
from exchange_server.pipeline.queries import resource_status
from exchange_server.pipeline.workflow import Workflow
from exchange_server.store.models import Query, QueryResource, as_utc

__all__ = ["query_app"]

query_app = command_group(
    "query",
    "Queries (查询申请) on this node: their resources, routing, deadlines and segments; "
    "extend or terminate a relayed resource's deadline.",
)

ReasonOpt = Annotated[
    str, typer.Option("--reason", help="Why (recorded, notified; no personal data).")
]
ByOpt = Annotated[str, typer.Option("--by", help="Who decided (name or post, recorded).")]


def _workflow(home: Path) -> Workflow:
    node = Node.open(home)
    return Workflow(node, node_spool(node))


def _iso(value: dt.date | dt.datetime | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return as_utc(value).isoformat(timespec="seconds")
    return value.isoformat()


def _resource_json(r: QueryResource) -> dict[str, Any]:
    return resource_status(r) | {
        "relay_id": r.relay_id,
        "relay_sent_at": _iso(r.relay_sent_at),
        "answered_at": _iso(r.answered_at),
        "overdue_at": _iso(r.overdue_at),
        "escalated_at": _iso(r.escalated_at),
        "decided_by": r.decided_by,
        "note": r.note,
    }


def _query_json(q: Query, resources: list[QueryResource]) -> dict[str, Any]:
    return {
        "query": q.bundle_id,
        "requester": q.requester,
        "business_type": q.business_type,
        "persons": q.persons,
        "state": q.state,
        "received_at": _iso(q.received_at),
        "due_date": _iso(q.due_date),
        "closed_at": _iso(q.closed_at),
        "overdue_at": _iso(q.overdue_at),
        "resources": [_resource_json(r) for r in resources],
    }


@query_app.command("list")
@fail_on_error
def list_queries(
    home: HomeOpt,
    state: Annotated[str, typer.Option("--state", help="open, suspended, closed or all.")] = "open",
    json_out: JsonOpt = False,
) -> None:
    """List queries with each resource's state and deadline (oldest first).

    **Examples**

        exchange-server query list --home /srv/node

        exchange-server query list --home /srv/node --state all --json
    """
    if state not in ("open", "suspended", "closed", "all"):
        raise InputError("--state must be open, suspended, closed or all", code="E_USAGE")
    wf = _workflow(home)
    queries = wf.book.queries(None if state == "all" else state)
    body = [_query_json(q, wf.book.resources(q.bundle_id)) for q in queries]
    if json_out:
        emit_json({"queries": body})
        return
    t = Table(title=f"queries ({state})")
    for col in ("query", "from", "state", "due", "resources (state, due, escalated)"):
        t.add_column(col)
    for q in body:
        parts = [
            f"{r['resource']} {r['state']} {r['due_date'] or '-'}"
            + (" ESCALATED" if r["escalated_at"] else "")
            for r in q["resources"]
        ]
        late = " OVERDUE" if q["overdue_at"] else ""
        t.add_row(
            q["query"], q["requester"], q["state"] + late, q["due_date"] or "-", "; ".join(parts)
        )
    console.print(t)
    if not body:
        console.print("no queries", markup=False)


@query_app.command("show")
@fail_on_error
def show(
    home: HomeOpt,
    query: Annotated[str, typer.Argument(help="The query's bundle id.")],
    json_out: JsonOpt = False,
) -> None:
    """One query: per resource its routing, state, deadline, relay and segment; its segments
    and notices.

    **Examples**

        exchange-server query show --home /srv/node 3f2c8a6e-5d1b-4c1e-9a57-0c2d5e7f9b10 --json
    """
    wf = _workflow(home)
    q = wf.book.query(query)
    if q is None:
        raise InputError(f"no query {query} on this node", code="E_NOT_FOUND")
    body = _query_json(q, wf.book.resources(query))
    body["segments"] = [
        {
            "segment": g.seq,
            "final": g.final,
            "trigger": g.trigger,
            "delivered_at": _iso(g.delivered_at),
        }
        for g in wf.book.segments(query)
    ]
    body["notices"] = [
        {"kind": n.kind, "to": n.dept, "resource": n.resource, "name": n.name,
         "delivered_at": _iso(n.delivered_at)}
        for n in wf.keeper.notices(query)
    ]  # fmt: skip
    if json_out:
        emit_json(body)
        return
    console.print(
        f"query {q.bundle_id} from {q.requester} ({q.business_type}, {q.persons} person(s)): "
        f"{q.state}; whole verification due {body['due_date'] or '-'}",
        markup=False,
    )
    t = Table()
    for col in ("resource", "answered by", "state", "due", "segment", "decided"):
        t.add_column(col)
    for r in body["resources"]:
        decided = f"{r['decided_by']}: {r['note']}" if r["decided_by"] else ""
        t.add_row(
            r["resource"],
            f"{r['answered_by']} ({r['provider']})",
            r["state"] + (" (escalated)" if r["escalated_at"] else ""),
            r["due_date"] or "-",
            str(r["segment"] or "-"),
            decided,
        )
    console.print(t)
    for g in body["segments"]:
        console.print(
            f"segment {g['segment']}{' (final)' if g['final'] else ''}: {g['trigger']}, "
            f"delivered {g['delivered_at'] or 'not yet'}",
            markup=False,
        )
    for n in body["notices"]:
        console.print(f"notice {n['kind']} to {n['to']} ({n['resource']})", markup=False)


@query_app.command()
@fail_on_error
def extend(
    home: HomeOpt,
    query: Annotated[str, typer.Argument(help="The query's bundle id.")],
    resource: Annotated[str, typer.Argument(help="The relayed resource's code.")],
    days: Annotated[int, typer.Option("--days", help="Working days added to its due date.")],
    reason: ReasonOpt,
    by: ByOpt,
    json_out: JsonOpt = False,
) -> None:
    """Extend a relayed resource's deadline by working days (延期, 浙江 四(一)3); the provider
    and the requester get a signed notice with the new date.

    **Examples**

        exchange-server query extend --home /srv/node 3f2c8a6e-5d1b-4c1e-9a57-0c2d5e7f9b10 RS-JY-01 --days 3 --reason "系统升级停机" --by "张科长"
    """
    wf = _workflow(home)
    row = wf.keeper.extend(query, resource, days, reason=reason, by=by)
    if json_out:
        emit_json(_resource_json(row))
        return
    console.print(
        f"{resource} of query {query}: due {_iso(row.due_date)} (extended by {days} working "
        "days); both parties notified",
        markup=False,
    )


@query_app.command()
@fail_on_error
def terminate(
    home: HomeOpt,
    query: Annotated[str, typer.Argument(help="The query's bundle id.")],
    resource: Annotated[str, typer.Argument(help="The relayed resource's code.")],
    reason: ReasonOpt,
    by: ByOpt,
    json_out: JsonOpt = False,
) -> None:
    """End a relayed resource without an answer (终止, 浙江 四(一)3): the requester gets a segment
    saying `terminated`, the provider a notice.

    **Examples**

        exchange-server query terminate --home /srv/node 3f2c8a6e-5d1b-4c1e-9a57-0c2d5e7f9b10 GA-CL-01 --reason "不可抗力：数据中心断电" --by "张科长"
    """
    wf = _workflow(home)
    segment = wf.keeper.terminate(query, resource, reason=reason, by=by)
    if json_out:
        emit_json({"query": query, "resource": resource, "segment": segment.seq,
                   "final": segment.final})  # fmt: skip
        return
    console.print(
        f"{resource} of query {query} terminated; segment {segment.seq}"
        f"{' (final)' if segment.final else ''} sent to the requester",
        markup=False,
    )


@query_app.command()
@fail_on_error
def tick(
    home: HomeOpt,
    at: Annotated[
        str | None,
        typer.Option("--at", help="Judge deadlines as if at this ISO 8601 time (default now)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Run the deadline check now (the pipeline process runs it every `[deadlines]
    tick_seconds`): overdue notices, escalations, deadlines a late calendar import makes
    computable, and what a crash left undelivered.

    **Examples**

        exchange-server query tick --home /srv/node

        exchange-server query tick --home /srv/node --at 2026-10-12T09:00:00+08:00 --json
    """
    wf = _workflow(home)
    when = parse_time(at)
    wf.keeper.clock = lambda: when
    report = wf.keeper.tick()
    if json_out:
        emit_json(report.as_json())
        return
    console.print(
        f"{report.overdue} overdue, {report.escalated} escalated, {report.deadlines_set} "
        f"deadline(s) set, {report.notices} notice(s) and {report.segments} segment(s) delivered",
        markup=False,
    )
    if report.calendar_gaps:
        console.print(
            f"warning: no working-day data for {report.calendar_gaps}: import them with "
            "`exchange-server calendar import`",
            markup=False,
        )
