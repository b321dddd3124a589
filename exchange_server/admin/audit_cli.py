"""``exchange-server audit``: read, verify, checkpoint and export the audit trail (办法 第十九条).

``verify`` checks the hash chain, the Merkle tree, the signed checkpoints (stored, published and
kept elsewhere) and the person index (:mod:`exchange_server.store.checkpoints`); ``list`` shows
the newest events, masked (:func:`exchange_common.masking.mask_id_numbers`); ``checkpoint``
signs one now; ``person`` finds the queries that named an ID number by its keyed digest;
``export`` writes an extract ``exchange-pki audit verify`` checks offline
(:mod:`exchange_server.admin.audit_export`). docs/audit.md is the whole story.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlmodel import col, select

from exchange_common.cli import console, emit_json, fail_on_error
from exchange_common.errors import InputError, StoreError
from exchange_common.fs import atomic_write
from exchange_common.masking import mask_id_numbers
from exchange_server.admin.audit_export import (
    Selection,
    build_extract,
    digest_of,
    person_events,
)
from exchange_server.admin.cli_shared import HomeOpt, JsonOpt, _node, command_group
from exchange_server.node import utcnow
from exchange_server.store.checkpoints import (
    ExternalCheckpoint,
    checkpoint_now,
    newest_checkpoint,
    node_public_key,
    note_size,
    origin_for,
    published_checkpoint,
    verify_trail,
)
from exchange_server.store.models import AuditEvent, as_utc

__all__ = ["audit_app"]

#: The ``--json`` schemas (a field added keeps the version; a field changed bumps it).
VERIFY_SCHEMA = "exchange-audit-verify/1"
CHECKPOINT_SCHEMA = "exchange-audit-checkpoint/1"
PERSON_SCHEMA = "exchange-audit-person/1"
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


CheckpointFiles = Annotated[
    list[Path] | None,
    typer.Option(
        "--checkpoint",
        help="A checkpoint note kept elsewhere (an inspector's copy) to check the trail "
        "against; repeatable.",
        show_default=False,
    ),
]


def _external(files: list[Path] | None) -> list[ExternalCheckpoint]:
    out = []
    for f in files or []:
        try:
            out.append(ExternalCheckpoint(f"checkpoint file {f}", f.read_text("utf-8")))
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"cannot read checkpoint {f}: {e}", code="E_NOT_FOUND") from None
    return out


@audit_app.command("verify")
@fail_on_error
def verify(home: HomeOpt, checkpoint: CheckpointFiles = None, json_out: JsonOpt = False) -> None:
    """Check the whole audit trail: hash chain, Merkle tree, signed checkpoints, person index.

    Exit 0 when everything holds; 1 when something does not, naming the first event that was
    altered, deleted, inserted or reordered, a person index that was changed, a checkpoint
    whose signature fails or that does not match the trail (a fork), or a tail cut off
    after a checkpoint. The published checkpoint file (``[audit] checkpoint_file``) and every
    ``--checkpoint`` copy are checked too: keep copies off the node.

    **Examples**

        exchange-server audit verify --home /srv/node

        exchange-server audit verify --home /srv/node --checkpoint inspector-copy.txt --json
    """
    node = _node(home)
    external = _external(checkpoint)
    published = published_checkpoint(node)
    if published is not None:
        external.insert(0, published)
    key = node_public_key(node)
    with node.session(write=False) as s:
        try:
            report, problem = (
                verify_trail(s, key, origin_for(node.config.code), external=external),
                None,
            )
        except StoreError as e:
            report, problem = None, e.message
        last = s.exec(select(AuditEvent).order_by(col(AuditEvent.seq).desc()).limit(1)).first()
    newest = _event(last) if last is not None else None
    doc = {
        "schema": VERIFY_SCHEMA,
        "intact": problem is None,
        "events": report.events if report else None,
        "root": report.root.hex() if report else None,
        "checkpoints": report.checkpoints if report else None,
        "external_checkpoints": report.external if report else None,
        "newest_checkpoint": (
            {"size": report.newest.size, "root": report.newest.root.hex()}
            if report and report.newest
            else None
        ),
        "problem": problem,
        "last": newest,
    }
    if json_out:
        emit_json(doc)
    elif report is not None:
        tail = f", the last {newest['at']} {newest['hash'][:16]}…" if newest else ""
        covered = (
            f"; {report.checkpoints} signed checkpoints and {report.external} kept elsewhere "
            f"match it (the newest covers {report.newest.size})"
            if report.newest
            else "; no checkpoint yet"
        )
        console.print(f"audit trail intact: {report.events} events{tail}{covered}")
    else:
        console.print(f"[red]{problem}[/red] (E_AUDIT)", highlight=False)
    if problem is not None:
        raise typer.Exit(1)


@audit_app.command("checkpoint")
@fail_on_error
def checkpoint_cmd(home: HomeOpt, json_out: JsonOpt = False) -> None:
    """Sign a checkpoint over every event now and publish it (``serve`` also does this every
    ``[audit] checkpoint_seconds`` and at shutdown). Prints the signed note.

    **Examples**

        exchange-server audit checkpoint --home /srv/node > checkpoint-$(date +%F).txt
    """
    node = _node(home)
    row = checkpoint_now(node, utcnow())
    if row is None:
        with node.session(write=False) as s:
            row = newest_checkpoint(s)
    if row is None:
        raise InputError("the audit trail is empty: nothing to checkpoint", code="E_NOT_FOUND")
    if json_out:
        emit_json(
            {"schema": CHECKPOINT_SCHEMA, "size": row.size, "root": row.root, "note": row.note}
        )
    else:
        sys.stdout.write(row.note)


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
    start = _time_opt(since, "--since")
    if start is not None:
        q = q.where(col(AuditEvent.at) >= start)
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


def _time_opt(value: str | None, name: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InputError(
            f"{name} {value!r} is not an ISO 8601 date or time", code="E_USAGE"
        ) from None
    return as_utc(when)


@audit_app.command("export")
@fail_on_error
def export(
    home: HomeOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="The extract file to write (JSON).")],
    department: Annotated[
        str | None, typer.Option(help="Events by, about or naming this department.")
    ] = None,
    bundle: Annotated[str | None, typer.Option(help="Events about or naming this bundle.")] = None,
    person: Annotated[
        str | None,
        typer.Option(
            help="Queries naming this ID number (read from the terminal when given as '-'; "
            "the extract holds only its keyed digest).",
        ),
    ] = None,
    since: Annotated[str | None, typer.Option(help="Events at or after (ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option(help="Events before (ISO 8601).")] = None,
    everything: Annotated[bool, typer.Option("--all", help="Every event.")] = False,
    consistency_from: Annotated[
        Path | None,
        typer.Option(
            help="An earlier checkpoint note: add the proof that the trail only grew since."
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Write an extract for an inspector: the selected events with their Merkle proofs, a
    checkpoint signed now, and the node's certificate. ``exchange-pki audit verify`` checks
    it offline, without the node's database.

    **Examples**

        exchange-server audit export --home /srv/node --department MZ330100 --since 2026-11-01 -o mz.json

        exchange-server audit export --home /srv/node --person - -o person.json

        exchange-pki audit verify mz.json --ca ministry-root.pem
    """
    node = _node(home)
    digest = digest_of(node, _read_id(person)) if person is not None else None
    older = None
    if consistency_from is not None:
        older = _external([consistency_from])[0].note
    sel = Selection(
        department=department,
        bundle=bundle,
        person=digest,
        since=_time_opt(since, "--since"),
        until=_time_opt(until, "--until"),
        everything=everything,
    )
    doc = build_extract(node, sel, now=utcnow(), older=older)
    try:
        atomic_write(out, (json.dumps(doc, ensure_ascii=False, indent=1) + "\n").encode(), 0o600)
    except OSError as e:
        raise InputError(f"cannot write {out}: {e.strerror or e}", code="E_IO") from None
    size = note_size(doc["checkpoint"])
    if json_out:
        emit_json({"out": str(out), "events": len(doc["events"]), "checkpoint_size": size})
    else:
        console.print(
            f"wrote {out}: {len(doc['events'])} events, proved against a checkpoint of "
            f"{size} events",
            highlight=False,
            markup=False,
        )


def _read_id(value: str) -> str:
    """The ID number of ``--person``: '-' reads it from the terminal without echo, so it
    stays out of the shell history and the process list."""
    if value != "-":
        return value
    return getpass.getpass("ID number: ")


@audit_app.command("person")
@fail_on_error
def person_cmd(
    home: HomeOpt,
    id_number: Annotated[
        str, typer.Argument(help="The ID number ('-' reads it from the terminal).")
    ],
    json_out: JsonOpt = False,
) -> None:
    """Was this person queried, by whom, under which authorization? For an inspector holding
    the ID number: the trail holds only its keyed digest (node audit key), never the number.

    **Examples**

        exchange-server audit person --home /srv/node -

        exchange-server audit person --home /srv/node 110101199003074258 --json
    """
    node = _node(home)
    digest = digest_of(node, _read_id(id_number))
    with node.session(write=False) as s:
        found = person_events(s, digest)
    rows = [
        {
            "seq": ev.seq,
            "at": as_utc(ev.at).isoformat(timespec="seconds"),
            "requester": ev.actor,
            "query": ev.subject,
            "authorization": mask_id_numbers(p.auth_ref) if p.auth_ref else None,
            "detail": _event(ev)["detail"],
        }
        for ev, p in found
    ]
    if json_out:
        emit_json({"schema": PERSON_SCHEMA, "person_digest": digest, "queries": rows})
        return
    if not rows:
        console.print("no audited query names this person")
    for r in rows:
        console.print(
            f"{r['at']} query {r['query']} by {r['requester']} under authorization "
            f"{r['authorization'] or '-'} (event {r['seq']})",
            highlight=False,
            markup=False,
        )
