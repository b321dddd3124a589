"""``exchange-server status``: what the node holds and what needs the administrator, at a glance,
and ``upload retry`` for an upload the pipeline holds.

The document and the attention rule live in :mod:`exchange_server.store.status` (the same for
``watch``, ``/status.json`` and the status page); this module prints them. Output holds codes,
states, counts and dates only: never an ID number or a name.
"""

from __future__ import annotations

from typing import Annotated

import typer

from exchange_common.cli import console, emit_json, fail_on_error
from exchange_common.errors import InputError
from exchange_server.admin.cli_shared import HomeOpt, JsonOpt, _node, command_group
from exchange_server.node import utcnow
from exchange_server.store.audit import EventSpec, append_events
from exchange_server.store.models import Upload
from exchange_server.store.status import SCHEMA, attention_reasons, needs_attention, node_status

__all__ = ["SCHEMA", "needs_attention", "node_status", "status", "upload_app"]


@fail_on_error
def status(home: HomeOpt, json_out: JsonOpt = False) -> None:
    """What the node holds and what needs you: uploads by state, the oldest still moving, uploads
    held after repeated failures, rejections of the last day, overdue deadlines, the CRL and the
    node certificate.

    Exit 0 when nothing needs attention; 1 when something does (:func:`needs_attention`: a
    held or stuck upload, a pipeline not keeping up, an overdue deadline, a CRL not current or
    due within a day, a node certificate with less than 30 days left, a year without a
    working-day calendar).

    **Examples**

        exchange-server status --home /srv/node

        exchange-server status --home /srv/node --json
    """
    now = utcnow()
    doc = node_status(_node(home), now)
    reasons = attention_reasons(doc, now)
    attention = bool(reasons)
    if json_out:
        emit_json(doc | {"attention": attention, "attention_reasons": reasons})
    else:
        up = doc["uploads"]["by_state"]
        lines = [
            f"node {doc['node']['code']} at {doc['node']['at']}",
            "uploads: " + (", ".join(f"{k} {v}" for k, v in sorted(up.items())) or "none"),
        ]
        if doc["oldest_moving"]:
            o = doc["oldest_moving"]
            lines.append(
                f"oldest still moving: {o['upload_id']} ({o['department']}, {o['kind']}, "
                f"{o['state']}) for {o['age_seconds']} s"
            )
        for h in doc["held"]:
            lines.append(
                f"HELD after {h['attempts']} failed attempts: upload {h['upload_id']} "
                f"({h['department']}, {h['kind']}, {h['state']})"
            )
        rej = doc["rejections_last_day"]
        lines.append(
            "rejections (last day): " + (", ".join(f"{k} {v}" for k, v in rej.items()) or "none")
        )
        d = doc["deadlines"]
        lines.append(f"deadlines: {d['overdue']} overdue, {d['due_within_a_day']} due within a day")
        crl = doc["crl"]
        lines.append(
            f"CRL: current until {crl['next_update']}"
            if crl["current"]
            else f"CRL NOT CURRENT ({crl['code']}): {crl['message']}"
        )
        cert = doc["certificate"]
        lines.append(
            f"node certificate: valid until {cert['not_after']} ({cert['days_left']} days)"
        )
        for c in doc["department_certificates"]:
            lines.append(
                f"department certificate {c['department']}: {c['state']}, ends {c['not_after']} "
                f"({c['days_left']} days)"
            )
        for item in doc["stuck"]:
            lines.append(
                f"STUCK since {item['since']}: upload {item['upload_id']} ({item['department']}, "
                f"{item['kind']}): {item['why']}"
            )
        p = doc["pipeline"]
        lines.append(
            f"pipeline: {'ok' if p['healthy'] else 'NOT KEEPING UP'}, {p['queued']} queued"
            + (f", the oldest for {p['oldest_queued_seconds']} s" if p["queued"] else "")
        )
        cal = doc["calendar"]
        lines.append(
            "working-day calendar: "
            + (", ".join(str(y) for y in cal["years"]) or "no year")
            + ("" if cal["covers_this_year"] else f" (NOT {now.year}: import it)")
        )
        sp = doc["spool"]
        quota = ", ".join(
            f"{code} {u['counted_bytes']}/{u['quota_bytes']} bytes ({u['outbox_files']} in outbox)"
            for code, u in sp["by_department"].items()
        )
        free = sp["disk"]["free_bytes"]
        lines.append(
            f"spool: {free // 2**30 if free is not None else '?'} GiB free; quota use: "
            + (quota or "no department")
        )
        a = doc["audit"]
        lines.append(
            f"audit trail: {a['events']} events, {a['checkpointed']} under a signed checkpoint"
            + (f" (newest {a['newest_checkpoint_at']})" if a["newest_checkpoint_at"] else "")
        )
        lines.append(
            "NEEDS ATTENTION: " + "; ".join(reasons) if reasons else "nothing needs attention"
        )
        for line in lines:
            console.print(line, markup=False)
    if attention:
        raise typer.Exit(1)


upload_app = command_group(
    "upload",
    "Uploads on this node: take up one the pipeline gave up on and holds.",
)


@upload_app.command("retry")
@fail_on_error
def retry(
    home: HomeOpt,
    upload_id: Annotated[str, typer.Argument(help="The held upload (from `status`).")],
    by: Annotated[str, typer.Option("--by", help="Who decided (name or post, recorded).")],
    json_out: JsonOpt = False,
) -> None:
    """Let the pipeline take up again an upload it held after `[limits] max_attempts` failures
    (fix the cause first: the log names it). Its failure count starts again from zero; audited
    `bundle.retry` with who decided. Refused (exit 3) for an upload that is not held.

    **Example**

        exchange-server upload retry --home /srv/node 6f1c2d3e-… --by 张科长
    """
    node = _node(home)
    if not by.strip():
        raise InputError("--by must name who decided")
    now = utcnow()
    with node.session() as s:
        up = s.get(Upload, upload_id)
        held = (
            up is not None
            and up.state in ("received", "accepted")
            and up.attempts >= node.config.limits.max_attempts
        )
        if up is None or not held:
            raise InputError(f"upload {upload_id} is not held", code="E_NOT_FOUND")
        up.attempts = 0
        s.add(up)
        append_events(
            s,
            [EventSpec(by.strip()[:64], "bundle.retry", up.bundle_id, {"upload": up.id})],
            now=now,
        )
    if json_out:
        emit_json({"upload_id": upload_id, "retried": True})
    else:
        console.print(f"upload {upload_id} is queued again", markup=False)
