"""``exchange-server retention``: purge what the retention policy lets go, now (cron), and see
what a run would do. ``serve`` is meant to run the same function on a schedule
(:func:`exchange_server.pipeline.retention.keep_retention`). Output names bundle ids, upload ids
and the node's own file names, never a drop-folder file's name (it may name a person).
"""

from __future__ import annotations

from typing import Annotated

import typer

from exchange_common.cli import console, emit_json, err_console, fail_on_error, parse_time
from exchange_common.errors import InputError
from exchange_server.admin.cli_shared import HomeOpt, JsonOpt, _node, command_group
from exchange_server.pipeline.retention import Report, run_retention

__all__ = ["retention_app"]

retention_app = command_group(
    "retention",
    "Keep evidence for its period and purge what expired: bundles, receipts and results, the "
    "quarantine, drop-folder plaintext and pulled outbox files ([retention] in node.toml).",
)


def _print(report: Report) -> None:
    counts = report.counts()
    verb = "would purge" if report.dry_run else "purged"
    console.print(
        f"{verb}: {counts.get('stored', 0)} stored bundle(s), "
        f"{counts.get('outbox', 0) + counts.get('sent', 0)} sent file(s), "
        f"{counts.get('quarantine', 0)} quarantined upload(s), {report.drop} drop-folder "
        f"file(s); {'would move' if report.dry_run else 'moved'} {len(report.retired)} pulled "
        "outbox file(s) to the node's evidence",
        markup=False,
    )
    kept = ", ".join(f"{n} {why.replace('_', ' ')}" for why, n in report.kept.items())
    console.print(f"kept: {kept or 'nothing else'}", markup=False)
    for material, labels in sorted(report.purged.items()):
        for label in labels:
            console.print(f"  {material:<10} {label}", markup=False)
    for label in report.retired:
        console.print(f"  {'retired':<10} {label}", markup=False)
    if report.audit_seq is not None:
        console.print(f"audit event {report.audit_seq} records this run", markup=False)


@retention_app.command("run")
@fail_on_error
def run(
    home: HomeOpt,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would go; change nothing.")
    ] = False,
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            help="With --dry-run: judge as if at this ISO 8601 time (default now).",
            show_default=False,
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Purge what expired under `[retention]` and move pulled outbox files to the node's
    evidence (`spool/sent/`), now; one audit event (`retention.purged`) records a run that
    changed anything. Open queries, unexpired reports (a year after the query closed, at
    least) and evidence inside its period are never purged, nor audit events or the state
    store. Exit 1 when a file could not be removed (named on stderr; the next run retries).

    **Examples**

        exchange-server retention run --home /srv/node --dry-run

        exchange-server retention run --home /srv/node --json

        exchange-server retention run --home /srv/node --dry-run --at 2027-06-30T00:00:00+08:00

    From cron, every 15 minutes, until `serve` runs it itself:

        */15 * * * * exchange-server retention run --home /srv/node --json >> /var/log/exchange/retention.json
    """
    if at is not None and not dry_run:
        raise InputError("--at judges a future or past time: only with --dry-run", code="E_USAGE")
    node = _node(home)
    report = run_retention(node, parse_time(at), dry_run=dry_run, actor="admin")
    if json_out:
        emit_json(report.as_json())
    elif report.skipped:
        console.print(f"nothing done: {report.skipped}", markup=False)
    else:
        _print(report)
    for problem in report.failed:
        err_console.print(f"error: could not remove {problem} (E_IO)", markup=False)
    if report.failed:
        raise typer.Exit(1)
