"""Options and small helpers shared by the ``exchange-client`` command modules.

The ``Annotated`` option types (``--dir``, ``--json``, ``--retries`` ...), the clock the commands
read (:func:`_now`, the only place a command takes the time), the retry warning, the client's
own exit codes (:data:`EXIT_PARTLY_REJECTED`, :data:`EXIT_PARTIAL_ANSWER`), and the printers
several commands use: a push's receipt, pulled outcomes, what is outstanding, tables that never
cut an id. Printers show ids, kinds, sizes, counts and reason codes with their words, never
member file names; ID numbers only masked.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.measure import Measurement
from rich.segment import Segments
from rich.table import Table

from exchange_client.outstanding import Outstanding, outstanding, partial_answers
from exchange_client.pull import PullOutcome
from exchange_client.receipts import ACCEPTED, PARTLY_REJECTED, receipt_report, row_reason_text
from exchange_client.state import EXPORTED, SEALED, UPLOADED, PushedBundle, State
from exchange_common.cli import (
    console,
    emit_json,
    err_console,
)
from exchange_common.codes import registered_text
from exchange_common.idnumber import china_today

DirOpt = Annotated[Path, typer.Option("--dir", help="The client directory (made by `init`).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
RetriesOpt = Annotated[
    int | None,
    typer.Option(
        "--retries", min=0, help="Attempts after a transient network failure (default: config, 4)."
    ),
]
KindOpt = Annotated[
    str, typer.Option("--kind", help="data, query, response, revocation or recheck.")
]
FieldOpt = Annotated[
    list[str] | None, typer.Option("--field", help="Manifest field KEY=VALUE (repeatable).")
]
FieldsJsonOpt = Annotated[
    Path | None, typer.Option("--fields-json", help="Manifest fields from a JSON object file.")
]
WaitOpt = Annotated[bool, typer.Option("--wait", help="Wait for the node's signed receipt.")]
TimeoutOpt = Annotated[
    float, typer.Option("--timeout", min=1, help="Seconds to wait for the receipt.")
]
EncodingOpt = Annotated[
    str | None,
    typer.Option("--encoding", help="CSV encoding (default: UTF-8 if it decodes, else GB18030)."),
]
ValidOnlyOpt = Annotated[
    bool,
    typer.Option("--valid-only", help="Seal only the valid rows of a table (drops reported)."),
]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _say_retry(json_out: bool) -> Callable[[BaseException, float], None]:
    def say(e: BaseException, delay: float) -> None:
        err_console.print(f"warning: {e}; retrying in {delay:.1f} s", markup=False)

    return say


#: How the screen names a bundle's :meth:`~exchange_client.state.PushedBundle.stage` before
#: its receipt (after it, the verdict).
STAGE_TEXT = {
    SEALED: "sealed, not uploaded",
    UPLOADED: "uploaded, awaiting receipt",
    EXPORTED: "exported, awaiting receipt",
}


def push_record_json(rec: PushedBundle) -> dict[str, Any]:
    """A pushed bundle as ``--json`` shows it (``push``, ``export``, ``wait``, ``status``):
    ids, kind, times, counts, digest, ``stage`` (``sealed``, ``uploaded``, ``exported``,
    ``accepted``, ``rejected``), verdict and reason code with the registry's text."""
    return {
        "bundle_id": rec.bundle_id,
        "kind": rec.kind,
        "created_at": rec.created_at,
        "members": rec.members,
        "size": rec.size,
        "sha256": rec.sha256,
        "uploaded_at": rec.uploaded_at,
        "exported_to": rec.exported_to,
        "stage": rec.stage(),
        "verdict": rec.verdict,
        "reason_code": rec.reason_code,
        "reason_text": registered_text(rec.reason_code),
    }


def _push_json(rec: PushedBundle, path: Path) -> dict[str, Any]:
    return push_record_json(rec) | {"file": str(path)}


#: ``push --wait`` / ``wait``: the node accepted the bundle but refused some of its rows.
EXIT_PARTLY_REJECTED = 7
#: ``status QUERY_ID`` / ``pull``: a query closed with resources unanswered (a partial answer).
EXIT_PARTIAL_ANSWER = 8

_OUTCOME_EXIT = {ACCEPTED: 0, PARTLY_REJECTED: EXIT_PARTLY_REJECTED}


def _report_verdict(state: State, bundle_id: str, path: Path, json_out: bool) -> None:
    """Print what the receipt of pushed bundle ``bundle_id`` says (:mod:`~exchange_client.receipts`)
    and exit with its code: 0 accepted, :data:`EXIT_PARTLY_REJECTED` when rows were refused,
    1 rejected (raises :class:`typer.Exit` for the last two)."""
    rec = state.pushed[bundle_id]
    report = receipt_report(state, bundle_id)
    if json_out:
        emit_json(_push_json(rec, path) | report.to_json())
    else:
        for line in report.lines():
            console.print(line, markup=False)
    code = _OUTCOME_EXIT.get(report.outcome, 1)
    if code:
        raise typer.Exit(code)


def print_outstanding(items: list[Outstanding]) -> None:
    """The ``outstanding`` block of ``pull``, ``import`` and ``status``: one line per thing
    waited for or owed (whole ids), or one line saying there is none."""
    if not items:
        console.print(
            "nothing outstanding: every push has its receipt, every query its answer, every "
            "relay its answer (as of the last pull)",
            markup=False,
        )
        return
    console.print("outstanding (as of the last pull):", markup=False)
    for item in items:
        console.print(f"  {item.line()}", markup=False)


def report_pulled(
    state: State,
    outcomes: list[PullOutcome],
    skipped: list[str],
    json_out: bool,
    *,
    key: str,
    where: str,
) -> None:
    """Print what ``pull`` (``key`` ``pulled``) or ``import`` (``imported``) did from ``where``
    (``the outbox``, ``the folder``), then what is still outstanding, and exit: 1 when a file
    was rejected, :data:`EXIT_PARTIAL_ANSWER` when a final result segment left a query not
    fully answered (raises :class:`typer.Exit` for both)."""
    items = outstanding(state, china_today())
    partial = partial_answers(state, [o.name for o in outcomes if o.status == "opened"])
    if json_out:
        emit_json(
            {
                key: [o.to_json() for o in outcomes],
                "skipped_names": len(skipped),
                "partial_answers": partial,
                "outstanding": [i.to_json() for i in items],
            }
        )
    else:
        for o in outcomes:
            console.print(_outcome_line(o), markup=False)
        if skipped:
            err_console.print(
                f"warning: {len(skipped)} name(s) in {where} refused as unsafe", markup=False
            )
        if not outcomes:
            console.print(f"nothing new in {where}", markup=False)
        for query in partial:
            console.print(f"query {query} closed, not fully answered", markup=False)
        print_outstanding(items)
    if any(o.status == "rejected" for o in outcomes):
        raise typer.Exit(1)
    if partial:
        raise typer.Exit(EXIT_PARTIAL_ANSWER)


#: Wider than any table the client prints: measuring a table against it gives its own width.
_UNBOUNDED = 10_000


def print_table(table: Table) -> None:
    """Print ``table`` on stdout without cutting a cell of a ``no_wrap`` column (bundle ids,
    outbox names, times): when the terminal is narrower than those columns need, the lines run
    past its edge (the terminal wraps them whole) and stderr says that ``--json`` has every
    field. Other columns wrap between words as usual."""
    needed = Measurement.get(console, console.options.update_width(_UNBOUNDED), table).minimum
    if needed <= console.width:
        console.print(table)
        return
    options = console.options.update_width(needed)
    console.print(Segments(console.render(table, options)), soft_wrap=True)
    if console.is_terminal:
        err_console.print(
            "note: the table is wider than the terminal; --json gives every field", markup=False
        )


def id_column(table: Table, header: str) -> None:
    """Add a column whose cells are never wrapped or cut (ids, names, times)."""
    table.add_column(header, no_wrap=True, overflow="ignore")


def with_words(code: str | None) -> str:
    """``CODE: the registry's words`` for a reason code (a row-level ``E_CODE:<item>`` reads as
    ``E_CODE``); the code alone when it is unregistered."""
    text = row_reason_text(code or "")
    return f"{code}: {text}" if text else str(code)


def _outcome_line(o: PullOutcome) -> str:
    if o.status == "rejected":
        return f"{o.name}: REJECTED, not opened ({with_words(o.reason_code)}); kept in rejected/"
    if o.status == "duplicate":
        return f"{o.name}: same content as a file pulled before; skipped"
    if o.status == "ignored":
        return (
            f"{o.name}: your own {o.kind} bundle {o.bundle_id} (sealed by `export`, for the "
            "node's drop folder); ignored"
        )
    if o.kind == "receipt":
        extra = f" ({o.reason_code})" if o.reason_code else ""
        line = f"{o.name}: receipt for {o.receipt_for}: {o.verdict}{extra}"
    else:
        line = f"{o.name}: {o.kind} {o.bundle_id} opened into {o.opened_to}"
    return f"{line}\n  {o.summary}" if o.summary else line
