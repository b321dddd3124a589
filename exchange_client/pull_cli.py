"""``exchange-client wait``, ``pull`` and ``status``: receipts, results and the local record."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from exchange_client.cli_shared import (
    DirOpt,
    JsonOpt,
    RetriesOpt,
    TimeoutOpt,
    _outcome_line,
    _report_verdict,
    _say_retry,
)
from exchange_client.config import load_config
from exchange_client.credentials import load_credentials
from exchange_client.ids import resolve_id
from exchange_client.pull import convert_opened, pull
from exchange_client.push import (
    wait_for_receipt,
)
from exchange_client.state import State, read_state
from exchange_client.tables import OUTPUT_FORMATS
from exchange_common.cli import (
    console,
    emit_json,
    err_console,
    fail_on_error,
)
from exchange_common.errors import InputError


@fail_on_error
def wait_cmd(
    directory: DirOpt,
    bundle_id: Annotated[
        str,
        typer.Argument(help="The id of a bundle pushed from DIR, or its first characters."),
    ],
    timeout: TimeoutOpt = 120.0,
    retries: RetriesOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Wait for the node's receipt for a bundle pushed earlier (after `push` without `--wait`).

    Exit 0 accepted, 1 rejected (the reason code is printed), 5 network trouble or timeout.
    The first characters of the id are enough when no other bundle pushed from DIR begins
    with them (several: exit 2, the candidates are listed).

    **Examples**

        exchange-client wait --dir ~/mz 3f2c8a6e-5d1b-4c1e-9a57-0c2d5e7f9b10 --timeout 600

        exchange-client wait --dir ~/mz 3f2c8a6e
    """
    cfg = load_config(directory)
    pushed = read_state(cfg.state_path).pushed
    found = resolve_id(bundle_id, pushed, what=f"bundles pushed from {cfg.dir}", param="BUNDLE_ID")
    if found is None:
        raise InputError(f"no bundle {bundle_id} was pushed from {cfg.dir}", code="E_NOT_FOUND")
    bundle_id = found
    creds = load_credentials(cfg)
    rec, _ = wait_for_receipt(
        cfg, creds, bundle_id, cfg.dir / "received", timeout=timeout, retries=retries
    )
    _report_verdict(rec, cfg.dir / "sent" / f"{bundle_id}.bundle", json_out)


@fail_on_error
def pull_cmd(
    directory: DirOpt,
    out: Annotated[
        Path | None, typer.Option("--out", help="Where opened bundles go (default DIR/received).")
    ] = None,
    retries: RetriesOpt = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="Convert CSV members of opened bundles: csv (UTF-8 with BOM, for Excel), csv-gb18030, xlsx or parquet.",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Download every new file from /outbox, verify it, open it into `OUT/<kind>/<BUNDLE_ID>/`.

    Only bundles signed by the pinned node certificate (chain and CRL checked) are opened;
    anything else is kept in `DIR/rejected/` with the reason and reported. Receipts record the
    verdict of the bundle they answer. Nothing is downloaded or processed twice. Exit code 1
    when a file was rejected.

    **Examples**

        exchange-client pull --dir ~/mz

        exchange-client pull --dir ~/mz --out /data/incoming --json

        exchange-client pull --dir ~/mz --format xlsx
    """
    if fmt is not None and fmt not in OUTPUT_FORMATS:
        raise InputError(
            f"unknown --format {fmt!r}: choose one of {', '.join(OUTPUT_FORMATS)}", code="E_USAGE"
        )
    cfg = load_config(directory)
    creds = load_credentials(cfg)
    out_dir = (out or cfg.dir / "received").absolute()
    outcomes, skipped = pull(cfg, creds, out_dir, retries=retries, on_retry=_say_retry(json_out))
    if fmt is not None:
        for problem in convert_opened(outcomes, fmt):
            err_console.print(f"warning: {problem}", markup=False)
    if json_out:
        emit_json({"pulled": [o.to_json() for o in outcomes], "skipped_names": len(skipped)})
    else:
        for o in outcomes:
            console.print(_outcome_line(o), markup=False)
        if skipped:
            err_console.print(
                f"warning: {len(skipped)} outbox name(s) refused as unsafe", markup=False
            )
        if not outcomes:
            console.print("nothing new in the outbox", markup=False)
    if any(o.status == "rejected" for o in outcomes):
        raise typer.Exit(1)


def query_status(state: State, query_id: str) -> dict[str, Any]:
    """Where a query pushed from this directory stands, from what was pulled for it.

    The newest result segment's states win; before any segment, the receipt's routing (every
    resource pending). Raises InputError ``E_NOT_FOUND`` for a query this directory did not push.
    """
    pushed = state.pushed.get(query_id)
    if pushed is None or pushed.kind != "query":
        raise InputError(f"no query {query_id} was pushed from this directory", code="E_NOT_FOUND")
    segments = sorted(
        (
            p
            for p in state.pulled.values()
            if p.kind == "result" and (p.fields or {}).get("in_reply_to") == query_id
        ),
        key=lambda p: int((p.fields or {}).get("segment") or 0),
    )
    resources: list[dict[str, Any]] = []
    due_date = None
    suspended = 0
    resumed = any(
        r.kind == "supplement" and r.verdict == "accepted" and r.in_reply_to == query_id
        for r in state.pushed.values()
    )
    final = False
    if segments:
        last = segments[-1].fields or {}
        resources = list(last.get("statuses") or [])
        due_date, final = last.get("due_date"), bool(last.get("final"))
    else:
        for p in state.pulled.values():
            f = p.fields or {}
            if p.kind == "receipt" and f.get("bundle_id") == query_id:
                q = (f.get("details") or {}).get("query") or {}
                due_date = q.get("due_date")
                suspended = int(q.get("unauthorized") or 0)
                resources = [r | {"state": "pending"} for r in q.get("routing") or []]
    # notices newer than the last segment say what changed since (overdue, extended, …)
    since = str((segments[-1].fields or {}).get("at") or "") if segments else ""
    notices = sorted(
        (
            p.fields or {}
            for p in state.pulled.values()
            if p.kind == "notice" and (p.fields or {}).get("query_id") == query_id
        ),
        key=lambda f: str(f.get("at") or ""),
    )
    for f in notices:
        if str(f.get("at") or "") <= since:
            continue
        for r in resources:
            if r.get("resource") == f.get("resource") and r.get("state") in _WAITING:
                if f.get("notice") != "deadline":  # a deadline set late changes only the date
                    r["state"] = f.get("notice")
                if f.get("due_date"):
                    r["due_date"] = f["due_date"]
    waiting = [r["resource"] for r in resources if r.get("state") in _WAITING]
    if pushed.verdict != "accepted":
        overall = pushed.verdict
    elif suspended and not segments and not resumed:
        overall = (
            f"suspended: {suspended} person(s) lack an authorization reference; send them with "
            f"`exchange-client push --kind supplement --field in_reply_to={query_id}`"
        )
    elif final:
        answered = all(r.get("state") == "answered" for r in resources)
        overall = "answered" if answered else "closed, not fully answered"
    else:
        overall = "open" if resources else "accepted, no answer yet"
    return {
        "query": query_id,
        "state": overall,
        "due_date": due_date,
        "segments": [int((p.fields or {}).get("segment") or 0) for p in segments],
        "waiting": waiting,
        "resources": resources,
    }


_WAITING = ("pending", "extended", "overdue")


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
    """Show the bundles pushed (with the node's verdict) and the files pulled, or one query.

    Shows ids, kinds, times, counts, sizes and reason codes only: never member file names.
    With QUERY_ID: per requested resource how it is answered (`node` or `provider`), its state
    (answered, pending, overdue, extended, terminated, no_data, failed) and its deadline (a date
    in Asia/Shanghai), from the receipt and the result segments pulled so far (`pull` first).

    **Examples**

        exchange-client status --dir ~/mz

        exchange-client status --dir ~/mz --json

        exchange-client status --dir ~/mz 3f2c8a6e-5d1b-4c1e-9a57-0c2d5e7f9b10

        exchange-client status --dir ~/mz 3f2c
    """
    cfg = load_config(directory)
    state = read_state(cfg.state_path)
    if query is not None:
        queries = (r.bundle_id for r in state.pushed.values() if r.kind == "query")
        query = (
            resolve_id(query, queries, what=f"queries pushed from {cfg.dir}", param="QUERY_ID")
            or query
        )
        info = query_status(state, query)
        if json_out:
            emit_json(info)
            return
        console.print(
            f"query {query}: {info['state']}; whole verification due {info['due_date'] or '-'}; "
            f"segments pulled: {', '.join(map(str, info['segments'])) or 'none'}",
            markup=False,
        )
        t = Table()
        for col in ("resource", "answered by", "state", "due (Asia/Shanghai)", "segment"):
            t.add_column(col)
        for r in info["resources"]:
            t.add_row(
                str(r.get("resource")),
                str(r.get("answered_by")),
                str(r.get("state")),
                str(r.get("due_date") or "-"),
                str(r.get("segment") or "-"),
            )
        console.print(t)
        return
    pushed = sorted(state.pushed.values(), key=lambda r: r.created_at)
    pulled = sorted(state.pulled.values(), key=lambda p: p.pulled_at)
    if json_out:
        emit_json(
            {
                "dept": cfg.dept,
                "node": f"{cfg.node_host}:{cfg.node_port}",
                "pushed": [
                    {
                        "bundle_id": r.bundle_id,
                        "kind": r.kind,
                        "created_at": r.created_at,
                        "uploaded_at": r.uploaded_at,
                        "members": r.members,
                        "size": r.size,
                        "verdict": r.verdict,
                        "reason_code": r.reason_code,
                    }
                    for r in pushed
                ],
                "pulled": [
                    {
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
                    for p in pulled
                ],
            }
        )
        return
    t = Table(title=f"pushed by {cfg.dept}")
    for col in ("bundle id", "kind", "created", "files", "bytes", "receipt"):
        t.add_column(col)
    for r in pushed:
        verdict = r.verdict if r.uploaded_at or r.verdict != "waiting" else "not uploaded"
        if r.reason_code:
            verdict += f" ({r.reason_code})"
        t.add_row(r.bundle_id, r.kind, r.created_at, str(r.members), str(r.size), verdict)
    console.print(t)
    t2 = Table(title="pulled from the node")
    for col in ("name", "kind", "pulled", "bytes", "status"):
        t2.add_column(col)
    for p in pulled:
        st = p.status + (f" ({p.reason_code})" if p.reason_code else "")
        t2.add_row(p.name, p.kind or "-", p.pulled_at, str(p.size), st)
    console.print(t2)
