"""Providers' answers checked, and answers turned into segment content: the engine's for hosted resources, a provider's for a
relay. Both run the same :func:`~exchange_server.data.engine.match` over the query's persons,
so a relayed answer reaches the requester in exactly the shape of a hosted one (results per
person, a household summary), and a person without a record in the answer is ``no_record``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from exchange_common.catalog import Resource
from exchange_common.errors import InputError, PeerError
from exchange_common.fs import atomic_write
from exchange_common.idnumber import china_today
from exchange_server.data.answers import store_answer
from exchange_server.data.datasets import DatasetStore
from exchange_server.data.engine import match
from exchange_server.pipeline.queries import QueryBook, SegmentContent
from exchange_server.pipeline.router import AcceptedBundle, Refusal
from exchange_server.store.models import ResourceState

__all__ = ["COUNT_KEYS", "answer_hosted", "answer_relayed", "check_answer"]

log = logging.getLogger(__name__)

#: The engine's per-resource counts that go into a segment's report.
COUNT_KEYS = ("persons", "duplicates", "matched_persons", "no_record", "records", "households")

Timer = Callable[[str], AbstractContextManager[None]]


def _run(
    book: QueryBook,
    datasets: DatasetStore,
    query_id: str,
    resource: Resource,
    request: dict[str, Any],
    files: Sequence[Path],
    out: Path,
    fmt: str,
) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    result = match(
        book.folder(query_id) / "persons.parquet",
        files,
        resource,
        request["items"],
        out / resource.code,
        time_range=request["time_range"],
        fmt="parquet" if fmt == "parquet" else "csv",
        threads=datasets.threads,
        memory_limit=datasets.memory_limit,
        data_key=datasets.data_key(),
    )
    summary = result.as_json()
    suffix = result.results.suffix
    members = [
        (f"{resource.code}-results{suffix}", str(result.results.relative_to(out))),
        (f"{resource.code}-households{suffix}", str(result.household_summary.relative_to(out))),
    ]
    entry = {
        "time_range": result.time_range,
        "items": list(result.items),
        **{k: summary[k] for k in COUNT_KEYS},
    }
    return members, entry


def answer_hosted(
    book: QueryBook,
    datasets: DatasetStore,
    query_id: str,
    codes: Sequence[str],
    fmt: str,
    timed: Timer,
) -> tuple[SegmentContent, dict[str, dict[str, Any]]]:
    """Answer the hosted resources ``codes`` from the datasets on the node.

    Returns the segment content (written into the ``engine`` segment folder) and the state
    updates per resource: ``answered``, ``no_data`` (nothing pushed) or ``failed`` (a stored
    dataset the engine cannot read; the detail goes to the log only).
    """
    out = book.segment_folder(query_id, "engine")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True, mode=0o700)
    members: list[tuple[str, str]] = []
    entries: dict[str, dict[str, Any]] = {}
    updates: dict[str, dict[str, Any]] = {}
    for code in codes:
        catalog_version, request = book.request(query_id, code)
        resource = book.catalog_resource(catalog_version, code)
        files = datasets.current_files(code)
        if not files:
            updates[code] = {"state": ResourceState.NO_DATA.value}
            entries[code] = {"message": "no data for this resource on the node"}
            continue
        try:
            with timed(f"match:{code}"):
                got, entry = _run(book, datasets, query_id, resource, request, files, out, fmt)
        except InputError as e:
            log.error("query %s: %s failed: %s", query_id, code, e.code)
            updates[code] = {"state": ResourceState.FAILED.value}
            entries[code] = {"message": "the node could not answer this resource"}
            continue
        members += got
        entries[code] = entry | {"dataset_version": datasets.versions(code)[-1].version}
        updates[code] = {"state": ResourceState.ANSWERED.value}
    content = SegmentContent(members, entries)
    book.save_content(query_id, "engine", content)
    return content, updates


def answer_relayed(
    book: QueryBook,
    datasets: DatasetStore,
    query_id: str,
    code: str,
    answer: Path,
    fmt: str,
    trigger: str,
) -> SegmentContent:
    """The segment content of a provider's checked ``answer`` file for resource ``code``."""
    catalog_version, request = book.request(query_id, code)
    resource = book.catalog_resource(catalog_version, code)
    out = book.segment_folder(query_id, trigger)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True, mode=0o700)
    members, entry = _run(book, datasets, query_id, resource, request, [answer], out, fmt)
    content = SegmentContent(members, {code: entry})
    book.save_content(query_id, trigger, content)
    return content


def check_answer(
    book: QueryBook,
    datasets: DatasetStore,
    bundle: AcceptedBundle,
    rid: str,
    table: Callable[[], Path],
    work: Path,
    now: dt.datetime,
) -> dict[str, Any]:
    """Check a provider's answer to relay ``rid`` and keep it, checked and encrypted, beside
    its query (:func:`~exchange_server.data.answers.store_answer`); its facts (counts, no
    personal data); ``table()`` gives the answer's one table (or refuses). Idempotent: the same answer reviewed again after a crash, even once merged,
    gets the same outcome.

    Raises :class:`Refusal` ``E_RELAY_UNKNOWN``, ``E_PROVIDER``, ``E_RELAY_CLOSED``,
    ``E_NOT_ASKED``, ``E_ANSWER_VALUES``, ``E_SCHEMA`` or ``E_ENCODING``.
    """
    # A relay exists from the moment its query is recorded: its file may reach the provider
    # before a crash lets the node record it as sent, and the answer is still for it.
    row = book.by_relay(rid)
    if row is None:
        raise Refusal("E_RELAY_UNKNOWN", "the answer's in_reply_to names no relay of this node")
    if row.provider != bundle.sender:
        raise Refusal(
            "E_PROVIDER", f"only the providing department may answer relays for {row.resource}"
        )
    target = book.folder(row.query_id) / "answers" / f"{bundle.bundle_id}.parquet"
    facts = target.with_suffix(".json")
    if facts.exists():  # this very answer, checked (perhaps merged) before a crash
        summary: dict[str, Any] = json.loads(facts.read_text("utf-8"))
        return summary
    if not ResourceState(row.state).waiting:
        raise Refusal("E_RELAY_CLOSED", f"the relay for {row.resource} is already {row.state}")
    answer = table()
    catalog_version, request = book.request(row.query_id, row.resource)
    resource = book.catalog_resource(catalog_version, row.resource)
    con = datasets.connect(work)
    try:
        report = store_answer(
            con,
            resource,
            answer,
            target,
            asked_items=request["items"],
            persons=book.folder(row.query_id) / "persons.parquet",
            today=china_today(now),
        )
    except (InputError, PeerError) as e:
        raise Refusal(e.code, e.message, detail=e.detail) from None
    finally:
        con.close()
    summary = {
        "relay_id": rid,
        "query_id": row.query_id,
        "resource": row.resource,
        **report.as_json(),
        "late": row.state == ResourceState.OVERDUE.value,
    }
    atomic_write(facts, json.dumps(summary).encode(), 0o600)
    return summary
