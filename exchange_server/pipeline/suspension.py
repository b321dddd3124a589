"""Suspended queries (浙江 六(二)): persons without authorization, and the supplement that
resumes them.

先授权、后核对: no query is answered for a person without an authorization reference. A query
whose persons list has valid ID numbers but lacks some references is accepted *suspended*: the
receipt says so (``suspended``, the count), nothing is relayed or answered, and the requester
sends a ``supplement`` bundle (``in_reply_to`` = the query) with a persons table (the same
columns as a query's) holding the missing references. The node checks it
(:func:`check_supplement`): it must come from the requester of a suspended query, every row must
be valid and authorized, every person must belong to the query, and afterwards nobody may lack
a reference (``E_SUPPLEMENT`` otherwise, with counts only). :func:`resume` then completes the
persons list, counts the deadlines from the supplement's arrival and opens the query; the
workflow relays and answers it as any other. A query still suspended ``[deadlines]
suspend_limit_days`` working days after it arrived is closed by the deadline check
(:meth:`~exchange_server.pipeline.deadlines.DeadlineKeeper.tick`) with a final segment saying
why.
"""

# SQL is assembled from quoted literals only.
# ruff: noqa: S608

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from sqlmodel import select

from exchange_common.errors import InputError
from exchange_common.fs import atomic_write, fsync_dir
from exchange_server.data.datasets import DatasetStore
from exchange_server.data.duck import copy_encrypted, encrypted_scan
from exchange_server.data.persons import prepare_persons
from exchange_server.pipeline.application import parse_application
from exchange_server.pipeline.plans import deadline_json, plan_json, plan_resources
from exchange_server.pipeline.queries import QueryBook
from exchange_server.pipeline.router import AcceptedBundle, Refusal
from exchange_server.store.audit import EventSpec, append_events
from exchange_server.store.models import Query, QueryResource, QueryState

__all__ = ["check_supplement", "resume"]


def _next_persons(book: QueryBook, query_id: str, bundle_id: str) -> Path:
    return book.folder(query_id) / "supplements" / f"{bundle_id}.parquet"


def check_supplement(
    book: QueryBook,
    datasets: DatasetStore,
    bundle: AcceptedBundle,
    query_id: str,
    table: Path,
    work: Path,
) -> dict[str, Any]:
    """Check a supplement and prepare the completed persons list beside the query.

    Raises :class:`Refusal` ``E_SUPPLEMENT`` (no suspended query of the sender with that id;
    a person not in the query; persons still without a reference), ``E_ID``,
    ``E_AUTHORIZATION``, ``E_SCHEMA`` or ``E_ENCODING`` (the table itself).
    """
    query = book.query(query_id)
    if query is None or query.requester != bundle.sender:
        raise Refusal("E_SUPPLEMENT", "the supplement names no query of the sender on this node")
    checked = _next_persons(book, query_id, bundle.bundle_id).with_suffix(".json")
    if checked.exists():  # this supplement, checked (perhaps applied) before a crash
        return {"supplement": json.loads(checked.read_text("utf-8"))}
    if query.state != QueryState.SUSPENDED.value:
        raise Refusal("E_SUPPLEMENT", f"the query is {query.state}, not suspended")
    supplement = work / "supplement.parquet"
    con = datasets.connect(work)
    try:
        try:
            check = prepare_persons(con, table, supplement)
        except InputError as e:
            raise Refusal(e.code, e.message, detail=e.detail) from None
        if check.bad_ids:
            raise Refusal("E_ID", f"{check.bad_ids} ID number(s) fail GB 11643")
        if check.unauthorized:
            raise Refusal(
                "E_AUTHORIZATION",
                f"{check.unauthorized} person(s) of the supplement lack an authorization reference",
            )
        persons = encrypted_scan(book.folder(query_id) / "persons.parquet", row_numbers=True)
        given = (
            f'(SELECT id_number, min("authorization") AS auth FROM {encrypted_scan(supplement)} '
            "GROUP BY id_number)"
        )
        row = con.execute(
            f"SELECT count(*) FROM {given} s WHERE s.id_number NOT IN "
            f"(SELECT id_number FROM {persons})"
        ).fetchone()
        strangers = int(row[0]) if row else 0
        if strangers:
            raise Refusal(
                "E_SUPPLEMENT", f"{strangers} person(s) of the supplement are not in the query"
            )
        merged = (
            f'SELECT p.* EXCLUDE (file_row_number) REPLACE (coalesce(p."authorization", s.auth) '
            f'AS "authorization") FROM {persons} p LEFT JOIN {given} s USING (id_number) '
            "ORDER BY p.file_row_number"
        )
        target = _next_persons(book, query_id, bundle.bundle_id)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = target.with_name(f".{target.name}.tmp")
        copy_encrypted(con, merged, tmp)
        row = con.execute(
            f'SELECT count(*) FILTER (WHERE "authorization" IS NULL) FROM {encrypted_scan(tmp)}'
        ).fetchone()
        missing = int(row[0]) if row else 0
        if missing:
            tmp.unlink(missing_ok=True)
            raise Refusal(
                "E_SUPPLEMENT",
                f"{missing} person(s) of the query still lack an authorization reference",
            )
        tmp.replace(target)
        fsync_dir(target.parent)
    finally:
        con.close()
    facts = {"query_id": query_id, "persons": check.rows}
    atomic_write(target.with_suffix(".json"), json.dumps(facts).encode(), 0o600)
    return {"supplement": facts}


def resume(book: QueryBook, query_id: str, bundle_id: str, received_at: dt.datetime) -> bool:
    """Complete a suspended query's persons with supplement ``bundle_id`` and open it, its
    deadlines counted from ``received_at``. False (and nothing changed) when the query is no
    longer suspended (another supplement resumed it, or it expired)."""
    query = book.query(query_id)
    if query is None or query.state != QueryState.SUSPENDED.value:
        return False
    folder = book.folder(query_id)
    nxt = _next_persons(book, query_id, bundle_id)
    if nxt.exists():
        nxt.replace(folder / "persons.parquet")
        fsync_dir(folder)
    body = json.loads((folder / "application.json").read_text("utf-8"))
    app = parse_application(body["application"])
    _, catalog = book.catalogs.load(int(body["catalog_version"]))
    plans, deadline = plan_resources(
        app.resources, catalog, query.requester, app.business_type, received_at, book.calendar()
    )
    body |= {
        "plans": [plan_json(p) for p in plans],
        "deadline": deadline_json(deadline),
        "suspended": 0,
    }
    atomic_write(folder / "application.json", json.dumps(body, ensure_ascii=False).encode(), 0o600)
    due = {p.resource: p.deadline for p in plans}
    now = book.clock()
    with book.node.session() as s:
        row = s.get(Query, query_id)
        assert row is not None
        if row.state != QueryState.SUSPENDED.value:
            return False
        row.state, row.updated_at = QueryState.OPEN.value, now
        row.due_date = deadline.due_date if deadline else None
        row.due_at = deadline.due_at if deadline else None
        s.add(row)
        resources = list(s.exec(select(QueryResource).where(QueryResource.query_id == query_id)))
        for r in resources:
            d = due.get(r.resource)
            r.due_date, r.due_at = (d.due_date, d.due_at) if d else (None, None)
            s.add(r)
        append_events(
            s,
            [
                EventSpec(
                    query.requester,
                    "query.resumed",
                    query_id,
                    {"supplement": bundle_id, "due_date": deadline_json(deadline)},
                )
            ],
            now=now,
        )
    return True
