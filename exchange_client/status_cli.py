"""``exchange-client status``: the bundles pushed, the files pulled and what is outstanding, or
one query."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from exchange_client.cli_shared import (
    EXIT_PARTIAL_ANSWER,
    STAGE_TEXT,
    DirOpt,
    JsonOpt,
    id_column,
    print_outstanding,
    print_table,
    push_record_json,
    with_words,
)
from exchange_client.config import ClientConfig, load_config
from exchange_client.ids import resolve_id
from exchange_client.outstanding import PARTIAL, outstanding, query_status
from exchange_client.receipts import PARTLY_REJECTED, ReceiptReport, receipt_report
from exchange_client.state import WAITING, PulledItem, PushedBundle, State, read_state
from exchange_common.cli import console, emit_json, fail_on_error
from exchange_common.idnumber import china_today


@fail_on_error
def status(
    directory: DirOpt,
    query: Annotated[
        str | None,
        typer.Argument(
            help="A query pushed from DIR (or the first characters of its id): show each "
            "resource's routing, state and deadline."
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Show the bundles pushed (with their stage) and the files pulled, or one query.

    Each pushed bundle's stage: `sealed, not uploaded` (it never reached the node:
    `exchange-client resend BUNDLE_ID`), `uploaded, awaiting receipt`, `exported, awaiting
    receipt` (removable media), `accepted` or `rejected` (with the reason code); `--json` has it
    as `stage` (`sealed`, `uploaded`, `exported`, `accepted`, `rejected`).

    Shows ids, kinds, times, counts, sizes and reason codes only: never member file names.
    A data push that the node accepted with rows refused shows them in its receipt column.
    Then what is outstanding: receipts not pulled yet, bundles never uploaded, queries with
    resources pending, overdue (the due date passed) or missing, relays you have not answered.

    With QUERY_ID: per requested resource how it is answered (`node` or `provider`), its state
    (answered, pending, overdue, extended, terminated, no_data, failed) and its deadline (a date
    in Asia/Shanghai), from the receipt and the result segments pulled so far (`pull` first).
    Exit code 8 when the query closed not fully answered.

    **Examples**

        exchange-client status --dir ~/mz

        exchange-client status --dir ~/mz --json

        exchange-client status --dir ~/mz 3f2c8a6e-5d1b-4c1e-9a57-0c2d5e7f9b10

        exchange-client status --dir ~/mz 3f2c
    """
    cfg = load_config(directory)
    state = read_state(cfg.state_path)
    if query is None:
        _overview(cfg, state, json_out)
        return
    queries = (r.bundle_id for r in state.pushed.values() if r.kind == "query")
    found = resolve_id(query, queries, what=f"queries pushed from {cfg.dir}", param="QUERY_ID")
    _one_query(state, found or query, json_out)


def _one_query(state: State, query: str, json_out: bool) -> None:
    """``status QUERY_ID``; exits :data:`EXIT_PARTIAL_ANSWER` for a query closed not fully
    answered."""
    info = query_status(state, query)
    waiting = next((i for i in outstanding(state, china_today()) if i.bundle_id == query), None)
    if json_out:
        emit_json(info | {"outstanding": waiting.to_json() if waiting else None})
    else:
        console.print(
            f"query {query}: {info['state']}; whole verification due {info['due_date'] or '-'}; "
            f"segments pulled: {', '.join(map(str, info['segments'])) or 'none'}",
            markup=False,
        )
        if info["resources"]:
            t = Table()
            for col in ("resource", "answered by", "state", "due (Asia/Shanghai)"):
                id_column(t, col)
            t.add_column("segment")
            for r in info["resources"]:
                t.add_row(
                    str(r.get("resource")),
                    str(r.get("answered_by")),
                    str(r.get("state")),
                    str(r.get("due_date") or "-"),
                    str(r.get("segment") or "-"),
                )
            print_table(t)
        else:
            console.print("  no resource is known yet (pull the query's receipt)", markup=False)
        if waiting is not None:
            print_outstanding([waiting])
    if info["state"] == PARTIAL:
        raise typer.Exit(EXIT_PARTIAL_ANSWER)


def _stage_cell(report: ReceiptReport, rec: PushedBundle) -> str:
    if rec.verdict == WAITING:
        return STAGE_TEXT[rec.stage()]
    if report.outcome == PARTLY_REJECTED:
        return f"accepted, {report.rows_rejected} of {report.rows} row(s) rejected"
    return rec.verdict + (f" ({rec.reason_code})" if rec.reason_code else "")


def _overview(cfg: ClientConfig, state: State, json_out: bool) -> None:
    """``status`` without a query: what was pushed, what was pulled, what is outstanding."""
    pushed = sorted(state.pushed.values(), key=lambda r: r.created_at)
    pulled = sorted(state.pulled.values(), key=lambda p: p.pulled_at)
    reports = {r.bundle_id: receipt_report(state, r.bundle_id) for r in pushed}
    items = outstanding(state, china_today())
    if json_out:
        emit_json(
            {
                "dept": cfg.dept,
                "node": f"{cfg.node_host}:{cfg.node_port}",
                "pushed": [_pushed_json(r, reports[r.bundle_id]) for r in pushed],
                "pulled": [_pulled_json(p) for p in pulled],
                "outstanding": [i.to_json() for i in items],
            }
        )
        return
    if not pushed:
        console.print(f"nothing pushed from {cfg.dir} yet", markup=False)
    else:
        t = Table(title=f"pushed by {cfg.dept}")
        for col in ("bundle id", "kind", "created"):
            id_column(t, col)
        for col in ("files", "bytes"):
            t.add_column(col)
        # wide enough for every stage on one line: half a stage reads wrong
        t.add_column("stage", min_width=max(map(len, STAGE_TEXT.values())))
        for r in pushed:
            stage = _stage_cell(reports[r.bundle_id], r)
            t.add_row(r.bundle_id, r.kind, r.created_at, str(r.members), str(r.size), stage)
        print_table(t)
    if not pulled:
        console.print("nothing pulled from the node yet", markup=False)
    else:
        t2 = Table(title="pulled from the node")
        for col in ("name", "kind", "pulled"):
            id_column(t2, col)
        for col in ("bytes", "status"):
            t2.add_column(col)
        for p in pulled:
            st = p.status + (f" ({p.reason_code})" if p.reason_code else "")
            t2.add_row(p.name, p.kind or "-", p.pulled_at, str(p.size), st)
        print_table(t2)
    codes = {r.reason_code for r in pushed} | {p.reason_code for p in pulled}
    for code in sorted(c for c in codes if c):
        console.print(f"  {with_words(code)}", markup=False)
    if pushed or pulled:
        print_outstanding(items)


def _pushed_json(r: PushedBundle, report: ReceiptReport) -> dict[str, Any]:
    return push_record_json(r) | {
        "outcome": report.outcome,
        "rows_stored": report.rows_stored,
        "rows_rejected": report.rows_rejected,
        "rejected_by_reason": report.rejected_by_reason,
    }


def _pulled_json(p: PulledItem) -> dict[str, Any]:
    return {
        "name": p.name,
        "kind": p.kind,
        "bundle_id": p.bundle_id,
        "pulled_at": p.pulled_at,
        "size": p.size,
        "status": p.status,
        "reason_code": p.reason_code,
        "receipt_for": p.receipt_for,
        "verdict": p.verdict,
    }
