"""``exchange-client status``: the bundles pushed and the files pulled, or one query."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from exchange_client.cli_shared import DirOpt, JsonOpt, id_column, print_table
from exchange_client.config import load_config
from exchange_client.ids import resolve_id
from exchange_client.outstanding import query_status
from exchange_client.state import read_state
from exchange_common.cli import console, emit_json, fail_on_error


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
        if not info["resources"]:
            console.print("  no resource is known yet (pull the query's receipt)", markup=False)
            return
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
    if not pushed:
        console.print(f"nothing pushed from {cfg.dir} yet", markup=False)
    else:
        t = Table(title=f"pushed by {cfg.dept}")
        for col in ("bundle id", "kind", "created"):
            id_column(t, col)
        for col in ("files", "bytes", "receipt"):
            t.add_column(col)
        for r in pushed:
            verdict = r.verdict if r.uploaded_at or r.verdict != "waiting" else "not uploaded"
            if r.reason_code:
                verdict += f" ({r.reason_code})"
            t.add_row(r.bundle_id, r.kind, r.created_at, str(r.members), str(r.size), verdict)
        print_table(t)
    if not pulled:
        console.print("nothing pulled from the node yet", markup=False)
        return
    t2 = Table(title="pulled from the node")
    for col in ("name", "kind", "pulled"):
        id_column(t2, col)
    for col in ("bytes", "status"):
        t2.add_column(col)
    for p in pulled:
        st = p.status + (f" ({p.reason_code})" if p.reason_code else "")
        t2.add_row(p.name, p.kind or "-", p.pulled_at, str(p.size), st)
    print_table(t2)
