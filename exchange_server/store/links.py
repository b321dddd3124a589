"""Which ids belong together, and which of them open work still needs.

The node names its material by ids: an upload (``Upload.id``), the bundle it carried
(``Upload.bundle_id``), the query that bundle opened (``Query.bundle_id``), the query's relays
(``QueryResource.relay_id``), the providers' answers (``QueryResource.answer_bundle``) and the
requester's supplements (named by the ``query.resumed`` audit events). Files carry these ids in
their names (``store/<BUNDLE>.bundle``, ``quarantine/<UPLOAD>``, ``receipt-<UPLOAD>.bundle``,
``result-<QUERY>-<N>.bundle``, ``relay-<RELAY>.bundle``, ``notice-…-<RELAY or QUERY>-….bundle``).

:func:`open_work` is what the retention must never purge; :func:`relations` tells, for groups of
ids, the query they belong to and when the node last recorded them; :func:`case_of` is the whole
story of one bundle for ``exchange-server archive get``. Read-only, in the caller's session.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, or_
from sqlmodel import Session, col, select

from exchange_server.store.models import (
    AuditEvent,
    BundleState,
    Query,
    QueryResource,
    QueryState,
    Upload,
    as_utc,
)

__all__ = ["Case", "Relation", "case_of", "ids_in", "naming", "open_work", "relations"]

#: A canonical (lower-case) UUID inside a name.
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
#: Values per ``IN (...)`` list: well below every database's parameter limit.
_CHUNK = 400
#: Upload states the pipeline (or a query waiting for relays) still works on.
_WORKING = (BundleState.RECEIVED.value, BundleState.ACCEPTED.value, BundleState.ROUTED.value)
#: The audit action whose detail names a query's supplement (``supplement``).
_RESUMED = "query.resumed"


def ids_in(name: str) -> frozenset[str]:
    """The canonical UUIDs that occur in ``name`` (a file name the node made)."""
    return frozenset(_UUID.findall(name))


def _chunks(values: Iterable[str]) -> Iterable[list[str]]:
    items = sorted(set(values))
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def _uploads(session: Session, ids: Iterable[str]) -> list[Upload]:
    """Uploads whose id or bundle id is among ``ids``."""
    out: dict[str, Upload] = {}
    for chunk in _chunks(ids):
        q = select(Upload).where(or_(col(Upload.id).in_(chunk), col(Upload.bundle_id).in_(chunk)))
        out.update({u.id: u for u in session.exec(q)})
    return list(out.values())


def _queries(session: Session, ids: Iterable[str]) -> dict[str, Query]:
    """Queries named by ``ids``: by their bundle or upload id, or by a relay or answer of
    theirs."""
    ids = set(ids)
    qids: set[str] = set()
    for chunk in _chunks(ids):
        rows = session.exec(
            select(QueryResource.query_id).where(
                or_(
                    col(QueryResource.relay_id).in_(chunk),
                    col(QueryResource.answer_bundle).in_(chunk),
                )
            )
        )
        qids.update(rows)
    out: dict[str, Query] = {}
    for chunk in _chunks(ids | qids):
        q = select(Query).where(
            or_(col(Query.bundle_id).in_(chunk), col(Query.upload_id).in_(chunk))
        )
        out.update({row.bundle_id: row for row in session.exec(q)})
    return out


def _supplements(session: Session, query_ids: Iterable[str]) -> set[str]:
    """Bundle ids of the supplements that resumed ``query_ids`` (from their audit events)."""
    out: set[str] = set()
    for chunk in _chunks(query_ids):
        q = select(AuditEvent.detail).where(
            AuditEvent.action == _RESUMED, col(AuditEvent.subject).in_(chunk)
        )
        for detail in session.exec(q):
            value = json.loads(detail).get("supplement")
            if isinstance(value, str):
                out.add(value)
    return out


def _query_ids(session: Session, queries: Iterable[Query]) -> set[str]:
    """Every id of ``queries``: theirs, their upload's, their relays', answers' and
    supplements'."""
    queries = list(queries)
    ids: set[str] = set()
    for q in queries:
        ids |= {q.bundle_id, q.upload_id}
    for chunk in _chunks(q.bundle_id for q in queries):
        for r in session.exec(select(QueryResource).where(col(QueryResource.query_id).in_(chunk))):
            ids |= {v for v in (r.relay_id, r.answer_bundle) if v}
    return ids | _supplements(session, (q.bundle_id for q in queries))


def open_work(session: Session) -> frozenset[str]:
    """Every id the node still works on, and so must keep everything of.

    A query not ``closed`` (open or suspended) with its upload, relays, answers and
    supplements, and the uploads that carried them; every upload still in the pipeline or
    waiting for relays (``received``, ``accepted``, ``routed``) with its bundle.
    """
    queries = session.exec(select(Query).where(Query.state != QueryState.CLOSED.value)).all()
    ids = _query_ids(session, queries)
    for u in session.exec(select(Upload).where(col(Upload.state).in_(_WORKING))):
        ids |= {v for v in (u.id, u.bundle_id) if v}
    for u in _uploads(session, ids):
        ids |= {v for v in (u.id, u.bundle_id) if v}
    return frozenset(ids)


@dataclass(frozen=True)
class Relation:
    """What the store links one group of ids to."""

    #: The latest ``updated_at`` of the uploads among them that were not rejected.
    recorded_at: dt.datetime | None = None
    #: Whether they belong to a query (its application, upload, relays, answers, receipts).
    of_query: bool = False
    #: The latest ``closed_at`` of those queries (None while one is open, or for none).
    closed_at: dt.datetime | None = None


def relations(session: Session, groups: Mapping[str, Iterable[str]]) -> dict[str, Relation]:
    """For each key of ``groups`` (its ids: a bundle id, or the ids in a file's name), what the
    store links them to; keys without any link are left out. Reads in chunks, so a run over
    thousands of files costs a few queries per few hundred of them."""
    wanted = {key: set(ids) for key, ids in groups.items()}
    every = set().union(*wanted.values()) if wanted else set()
    uploads = _uploads(session, every)
    by_id: dict[str, list[Upload]] = {}
    for u in uploads:
        by_id.setdefault(u.id, []).append(u)
        if u.bundle_id:
            by_id.setdefault(u.bundle_id, []).append(u)
    # a receipt names its upload; the upload names the bundle that may be a query or an answer
    for ids in wanted.values():
        ids |= {u.bundle_id for i in list(ids) for u in by_id.get(i, ()) if u.bundle_id}
    queries = _queries(session, set().union(*wanted.values()) if wanted else set())
    links: dict[str, set[str]] = {}
    for qid, q in queries.items():
        for i in (qid, q.upload_id):
            links.setdefault(i, set()).add(qid)
    for chunk in _chunks(queries):
        for r in session.exec(select(QueryResource).where(col(QueryResource.query_id).in_(chunk))):
            for link in (r.relay_id, r.answer_bundle):
                if link:
                    links.setdefault(link, set()).add(r.query_id)
    out: dict[str, Relation] = {}
    for key, ids in wanted.items():
        mine = [u for i in ids for u in by_id.get(i, ()) if u.state != BundleState.REJECTED.value]
        qs = [queries[q] for i in ids for q in links.get(i, ())]
        if not mine and not qs:
            continue
        closed = [as_utc(q.closed_at) for q in qs if q.closed_at is not None]
        out[key] = Relation(
            recorded_at=max((as_utc(u.updated_at) for u in mine), default=None),
            of_query=bool(qs),
            closed_at=max(closed) if closed and len(closed) == len(qs) else None,
        )
    return out


@dataclass
class Case:
    """Everything the store holds about one bundle's story: the uploads, queries and ids."""

    uploads: list[Upload] = field(default_factory=list)
    queries: list[Query] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)

    def as_json(self) -> dict[str, Any]:
        """The uploads and queries of the case (states, codes, times: no personal data)."""

        def iso(value: dt.datetime | None) -> str | None:
            return as_utc(value).isoformat(timespec="seconds") if value else None

        return {
            "uploads": [
                {
                    "upload": u.id,
                    "bundle": u.bundle_id,
                    "dept": u.dept_code,
                    "kind": u.kind,
                    "state": u.state,
                    "reason_code": u.reason_code,
                    "receipt": u.receipt_name,
                    "received_at": iso(u.received_at),
                    "updated_at": iso(u.updated_at),
                }
                for u in sorted(self.uploads, key=lambda u: (as_utc(u.received_at), u.id))
            ],
            "queries": [
                {
                    "query": q.bundle_id,
                    "requester": q.requester,
                    "state": q.state,
                    "received_at": iso(q.received_at),
                    "closed_at": iso(q.closed_at),
                }
                for q in self.queries
            ],
        }


def case_of(session: Session, seeds: Sequence[str]) -> Case:
    """The case of ``seeds`` (an upload, bundle, query, relay or answer id): the uploads that
    carried them, the query they belong to with its relays, answers and supplements, and the
    uploads of those. Empty when the store knows none of them."""
    ids = set(seeds)
    for _ in range(3):  # upload -> bundle -> query -> relays/answers -> their uploads
        before = set(ids)
        uploads = _uploads(session, ids)
        ids |= {v for u in uploads for v in (u.id, u.bundle_id) if v}
        queries = _queries(session, ids)
        ids |= _query_ids(session, queries.values())
        if ids == before:
            break
    uploads = _uploads(session, ids)
    queries = _queries(session, ids)
    known = {v for u in uploads for v in (u.id, u.bundle_id) if v} | set(queries)
    if not known:
        return Case()
    return Case(uploads=uploads, queries=list(queries.values()), ids=ids)


def naming(ids: Iterable[str]) -> ColumnElement[bool]:
    """Audit events whose subject is one of ``ids`` or whose detail names one of them."""
    conds: list[ColumnElement[bool]] = []
    for i in sorted(set(ids)):
        conds += [col(AuditEvent.subject) == i, col(AuditEvent.detail).like(f"%{i}%")]
    return or_(*conds)
