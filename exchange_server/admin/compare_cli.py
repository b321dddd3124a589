"""``exchange-server compare``: cross-comparison rules (定期交叉比对) on demand and on schedule.

A thin adapter over :mod:`exchange_server.data.compare`: it reads the rules file, opens the node and
prints counts. Output never shows an ID number or a name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from exchange_common.cli import console, emit_json, err_console, fail_on_error, parse_time
from exchange_common.errors import ExchangeError
from exchange_server.admin.cli_shared import HomeOpt, JsonOpt, command_group
from exchange_server.data.compare import RunResult

__all__ = ["compare_app"]

compare_app = command_group(
    "compare",
    "Cross-comparison rules (定期交叉比对): flag roster persons found in other departments' "
    "data and deliver the list to the owning department.",
)

RulesOpt = Annotated[
    Path | None,
    typer.Option("--rules", help="Rules file (default: HOME/rules.toml).", show_default=False),
]
AtOpt = Annotated[
    str | None,
    typer.Option(
        "--at", help="Act as if at this ISO 8601 time instead of now.", show_default=False
    ),
]


def _print_result(result: RunResult) -> None:
    state = "delivered" if result.written else "already delivered"
    console.print(
        f"{result.rule}: {result.flagged_persons} of {result.roster_persons} roster person(s) "
        f"flagged in {result.records} record(s); {state} to {result.owner}: {result.bundle}",
        markup=False,
    )
    for t in result.targets:
        if t.allowed:
            excluded = f", {t.excluded_records} excluded" if t.excluded_records else ""
            console.print(
                f"  {t.resource}  {t.name}  {t.flagged_persons} person(s), "
                f"{t.records} record(s){excluded}",
                markup=False,
            )
        else:
            console.print(f"  {t.resource}  refused ({t.reason}): {t.message}", markup=False)


@compare_app.command("run")
@fail_on_error
def run(
    rule: Annotated[str, typer.Argument(help="Rule name (from the rules file).")],
    home: HomeOpt,
    rules: RulesOpt = None,
    at: AtOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Run one rule now and deliver its flagged list to the owner's outbox.

    The bundle `compare-<rule>-<UTC stamp>.bundle` is signed by the node and encrypted to the
    owner; it holds `flagged.csv` and `summary.json`. Running again with the same `--at`
    delivers nothing twice. Refused targets are listed with their reason code.

    **Examples**

        exchange-server compare run --home /srv/node deceased-recipients

        exchange-server compare run --home /srv/node recipient-assets --json
    """
    from exchange_server.data.compare import find_rule, load_rules, rules_path, run_rule
    from exchange_server.node import Node

    chosen = find_rule(load_rules(rules or rules_path(home)), rule)
    result = run_rule(Node.open(home), chosen, now=parse_time(at))
    emit_json(result.as_json()) if json_out else _print_result(result)


@compare_app.command("list")
@fail_on_error
def list_rules(
    home: HomeOpt, rules: RulesOpt = None, at: AtOpt = None, json_out: JsonOpt = False
) -> None:
    """List the rules with their schedule, last run (from the audit trail) and next due time.

    `--json` adds each rule's title and the time and reason code of a failed attempt.

    **Examples**

        exchange-server compare list --home /srv/node

        exchange-server compare list --home /srv/node --json
    """
    from rich.table import Table

    from exchange_server.data.compare import load_rules, rule_status, rules_path
    from exchange_server.node import Node

    statuses = rule_status(
        Node.open(home), load_rules(rules or rules_path(home)), now=parse_time(at)
    )
    if json_out:
        emit_json([s.as_json() for s in statuses])
        return
    table = Table()
    for column in ("rule", "owner", "schedule", "last run", "flagged", "next due", "state"):
        table.add_column(column, no_wrap=column != "schedule")
    for s in statuses:
        if not s.rule.enabled:
            state = "disabled"
        elif s.due:
            state = "due"
        elif s.last_failure_code:
            state = f"retry ({s.last_failure_code})"
        else:
            state = "ok"
        table.add_row(
            s.rule.name,
            s.rule.owner,
            str(s.rule.schedule),
            f"{s.last_run:%Y-%m-%d %H:%M}Z" if s.last_run else "never",
            "" if s.last_flagged is None else str(s.last_flagged),
            f"{s.next_due:%Y-%m-%d %H:%M}Z" if s.next_due else "on demand",
            state,
        )
    console.print(table)


@compare_app.command("due")
@fail_on_error
def due(home: HomeOpt, rules: RulesOpt = None, at: AtOpt = None, json_out: JsonOpt = False) -> None:
    """Run every enabled rule that is due; what the node's pipeline calls on its own.

    A rule that fails (e.g. `E_NO_DATA`: nothing pushed yet) is audited and retried an hour
    later; the other rules still run. Without a rules file there is nothing to do. The exit
    code is that of the first failure (0 when every due rule was delivered).

    **Examples**

        exchange-server compare due --home /srv/node

        exchange-server compare due --home /srv/node --at 2026-12-01T00:05:00Z --json
    """
    from exchange_server.data.compare import load_rules, rules_path, run_due
    from exchange_server.node import Node

    outcomes = run_due(
        Node.open(home),
        load_rules(rules or rules_path(home), missing_ok=rules is None),
        now=parse_time(at),
    )
    failures: list[ExchangeError] = [o.error for o in outcomes if o.error is not None]
    if json_out:
        emit_json([o.as_json() for o in outcomes])
    else:
        if not outcomes:
            console.print("no rule is due", markup=False)
        for o in outcomes:
            if o.result is not None:
                _print_result(o.result)
            elif o.error is not None:
                err_console.print(
                    f"error: {o.rule}: {o.error.message} ({o.error.code})", markup=False
                )
    if failures:
        raise typer.Exit(failures[0].exit_code)
