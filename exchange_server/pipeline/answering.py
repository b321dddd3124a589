"""Answers turned into segment content: the engine's for hosted resources, a provider's for a
relay (checked and merged in one pass). Both end in the same engine stages over the query's
persons (:class:`~exchange_server.data.engine.Comparison`), so a relayed answer reaches the
requester in exactly the shape of a hosted one (results per person, a household summary), and
a person without a record in the answer is ``no_record``.
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
from exchange_common.fs import atomic_write, fsync_dir, fsync_file
from exchange_common.idnumber import china_today
from exchange_server.data.answers import merge_answer
from exchange_server.data.datasets import DatasetStore
from exchange_server.data.engine import MatchResult, OutputFormat, match
from exchange_server.pipeline.content import SegmentContent
from exchange_server.pipeline.queries import QueryBook
from exchange_server.pipeline.router import AcceptedBundle, Refusal
from exchange_server.store.models import ResourceState

__all__ = ["COUNT_KEYS", "answer_hosted", "check_answer", "place_answer"]

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
    return _content(result, resource.code, out)


def _sync(out: Path, members: Sequence[tuple[str, str]]) -> None:
    """Make the member files under ``out`` durable before the index that names them."""
    for _, name in members:
        fsync_file(out / name)
    for folder in {(out / name).parent for _, name in members} | {out}:
        fsync_dir(folder)


def _content(
    result: MatchResult, code: str, out: Path
) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """A resource's member files (relative to ``out``) and its entry in the segment report."""
    summary = result.as_json()
    suffix = result.results.suffix
    members = [
        (f"{code}-results{suffix}", str(result.results.relative_to(out))),
        (f"{code}-households{suffix}", str(result.household_summary.relative_to(out))),
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
    _sync(out, members)
    book.save_content(query_id, "engine", content)
    return content, updates


def check_answer(
    book: QueryBook,
    datasets: DatasetStore,
    bundle: AcceptedBundle,
    rid: str,
    table: Callable[[], Path],
    work: Path,
    now: dt.datetime,
) -> dict[str, Any]:
    """Check a provider's answer to relay ``rid`` and merge it: the requester's segment content
    (:func:`~exchange_server.data.answers.merge_answer`) in the answer's folder
    (:meth:`QueryBook.answer_folder`), then its facts (counts, no personal data); ``table()``
    gives the answer's one table (or refuses). Idempotent: the same answer reviewed again after
    a crash, even once placed in a segment, gets the same outcome.

    Raises :class:`Refusal` ``E_RELAY_UNKNOWN``, ``E_PROVIDER``, ``E_RELAY_CLOSED``,
    ``E_NOT_ASKED``, ``E_ANSWER_VALUES``, ``E_SCHEMA`` or ``E_ENCODING``; InputError
    ``E_ENGINE`` (the node's failure: the bundle is retried).
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
    facts = book.answer_facts(row.query_id, bundle.bundle_id)
    if facts.exists():  # this very answer, checked (perhaps placed) before a crash
        summary: dict[str, Any] = json.loads(facts.read_text("utf-8"))
        return summary
    if not ResourceState(row.state).waiting:
        raise Refusal("E_RELAY_CLOSED", f"the relay for {row.resource} is already {row.state}")
    answer = table()
    catalog_version, request = book.request(row.query_id, row.resource)
    resource = book.catalog_resource(catalog_version, row.resource)
    body = json.loads((book.folder(row.query_id) / "application.json").read_text("utf-8"))
    fmt: OutputFormat = (
        "parquet" if body["application"].get("result_format") == "parquet" else "csv"
    )
    out = book.answer_folder(row.query_id, bundle.bundle_id)
    shutil.rmtree(out, ignore_errors=True)
    con = datasets.connect(work)
    try:
        report, result = merge_answer(
            con,
            resource,
            answer,
            book.folder(row.query_id) / "persons.parquet",
            out / resource.code,
            items=request["items"],
            time_range=request["time_range"],
            fmt=fmt,
            today=china_today(now),
            threads=datasets.threads,
        )
    except PeerError as e:
        shutil.rmtree(out, ignore_errors=True)
        raise Refusal(e.code, e.message, detail=e.detail) from None
    except InputError as e:
        shutil.rmtree(out, ignore_errors=True)
        if e.code == "E_ENGINE":
            raise
        raise Refusal(e.code, e.message, detail=e.detail) from None
    finally:
        con.close()
    members, entry = _content(result, resource.code, out)
    _sync(out, members)
    SegmentContent(members, {resource.code: entry}, source=bundle.bundle_id).write(out)
    summary = {
        "relay_id": rid,
        "query_id": row.query_id,
        "resource": row.resource,
        **report.as_json(),
        "late": row.state == ResourceState.OVERDUE.value,
    }
    atomic_write(facts, json.dumps(summary).encode(), 0o600)
    return summary


def place_answer(book: QueryBook, query_id: str, bundle_id: str, trigger: str) -> bool:
    """Move answer ``bundle_id``'s merged content into the folder of segment ``trigger`` (one
    rename; a leftover there from an attempt that crashed before its assignment is replaced).
    True when that folder holds this answer's content, now or since before a crash; False when
    the content is gone (review the answer again)."""
    src = book.answer_folder(query_id, bundle_id)
    target = book.segment_folder(query_id, trigger)
    if SegmentContent.read(src) is not None:
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        src.rename(target)
        fsync_dir(target.parent)
        fsync_dir(src.parent)
        return True
    placed = SegmentContent.read(target)
    return placed is not None and placed.source == bundle_id
