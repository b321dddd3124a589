"""The query book: where every accepted query stands, its relays and its result segments.

A query (查询申请) names resources; the catalog version in force when it arrived says, per
resource, who answers it (``answered_by``): the node's engine from pushed datasets, or the
providing department, to which the node relays only what it needs (DESIGN §5b "Relays and
minimisation") with a deadline in working days (:mod:`exchange_common.workdays`). Each answer
becomes a result segment for the requester as it arrives (浙江 四(一)4); every segment lists
every resource's state, and the segment after which nothing is waiting is final and closes the
query.

Exactly once, across crashes and node processes: a relay's bundle id and outbox name are
functions of the query and the resource; a segment is *assigned* (number, trigger, the
statuses it reports) in one transaction whose unique ``(query, trigger)`` key stops one event
from making two segments, its content is prepared in ``spool/queries/<QUERY>/segments/``
*before* the assignment, and delivery (by name, :meth:`~exchange_server.outbox.writer.Outbox.deliver`)
is repeated until it is recorded. :meth:`QueryBook.deliver_pending` redelivers what a crash
left assigned but unrecorded.

Files per query in ``spool/queries/<QUERY>/``: ``application.json``, ``persons.parquet``
(encrypted under the node data key), ``persons.audit.json`` (the persons' keyed digests for the
audit trail), ``answers/`` (per provider's answer its facts, and its
merged content until route moves it into ``segments/``) and ``segments/`` (content waiting for
delivery; plaintext only while it waits). The answer itself is kept as its signed, encrypted
bundle in ``spool/store``.
"""

# SQL is assembled from quoted identifiers and literals only.

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from exchange_common.catalog import AnsweredBy, Resource
from exchange_common.workdays import Deadline, WorkCalendar
from exchange_server.data.catalog import CatalogStore
from exchange_server.data.datasets import DatasetStore
from exchange_server.node import Node
from exchange_server.outbox.writer import Outbox, result_bundle_id
from exchange_server.pipeline.content import SegmentContent
from exchange_server.pipeline.decisions import QueryClosed, RegistrySnapshot, UploadFacts, decide
from exchange_server.pipeline.plans import ResourcePlan
from exchange_server.pipeline.recording import transition_events
from exchange_server.spool import Spool
from exchange_server.store.audit import EventSpec, append_events
from exchange_server.store.calendar import load_calendar
from exchange_server.store.models import (
    BundleState,
    Query,
    QueryResource,
    QuerySegment,
    QueryState,
    ResourceState,
    Upload,
    as_utc,
)
from pki.bundle import BundleKind, Member

__all__ = [
    "RELAY_PERSON_HEADERS",
    "QueryBook",
    "SegmentContent",
    "relay_id",
    "relay_name",
    "resource_status",
    "result_name",
]

log = logging.getLogger(__name__)

#: Columns of the persons list a relay carries (the key item's name comes first).
RELAY_PERSON_HEADERS = ("授权编号", "姓名")


#: A query's folder of providers' answers.
ANSWERS = "answers"
#: The persons as the audit trail names them (keyed digests, masked authorizations).
PERSONS_AUDIT = "persons.audit.json"


def result_name(query_id: str, segment: int = 1) -> str:
    """Outbox name of a query's result segment ``segment`` (numbered from 1)."""
    return f"result-{query_id}-{segment}.bundle"


def relay_id(query_id: str, resource: str) -> str:
    """The bundle id of the relay of ``resource`` for ``query_id`` (a pure function)."""
    return str(result_bundle_id("relay", query_id, resource))


def relay_name(rid: str) -> str:
    """Outbox name of a relay in the provider's outbox."""
    return f"relay-{rid}.bundle"


def resource_status(r: QueryResource) -> dict[str, Any]:
    """A resource of a query as segments, ``status`` and ``query show`` report it (no
    personal data)."""
    return {
        "resource": r.resource,
        "answered_by": r.routing,
        "provider": r.provider,
        "state": r.state,
        "due_date": r.due_date.isoformat() if r.due_date else None,
        "segment": r.segment,
        **({"note": r.note} if r.note else {}),
    }


def _statuses(rows: Sequence[QueryResource]) -> list[dict[str, Any]]:
    return [resource_status(r) for r in rows]


def _safe(trigger: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "-", trigger)


class QueryBook:
    """Queries, relays and segments of one node (see the module text)."""

    def __init__(
        self,
        node: Node,
        spool: Spool,
        datasets: DatasetStore,
        outbox: Outbox,
        *,
        clock: Callable[[], dt.datetime],
    ) -> None:
        self.node = node
        self.spool = spool
        self.datasets = datasets
        self.outbox = outbox
        self.clock = clock
        self.catalogs = CatalogStore.for_home(node.config.home)

    # ------------------------------------------------------------------ places and reads

    def folder(self, query_id: str) -> Path:
        """``spool/queries/<QUERY>``."""
        return self.spool.root / "queries" / query_id

    def calendar(self) -> WorkCalendar:
        """The working-day calendar in force (package years and imported ones)."""
        with self.node.session(write=False) as s:
            return load_calendar(s)

    def query(self, query_id: str) -> Query | None:
        """The query's record, or None."""
        with self.node.session(write=False) as s:
            row = s.get(Query, query_id)
            return row.model_copy() if row else None

    def queries(self, state: str | None = None) -> list[Query]:
        """Queries (in one state, or all), oldest first."""
        with self.node.session(write=False) as s:
            q = select(Query)
            if state is not None:
                q = q.where(Query.state == state)
            return [r.model_copy() for r in s.exec(q.order_by(col(Query.received_at)))]

    def resources(self, query_id: str) -> list[QueryResource]:
        """The query's resources in the order requested."""
        with self.node.session(write=False) as s:
            return [
                r.model_copy()
                for r in s.exec(
                    select(QueryResource)
                    .where(QueryResource.query_id == query_id)
                    .order_by(col(QueryResource.id))
                )
            ]

    def by_relay(self, rid: str) -> QueryResource | None:
        """The query resource a relay id belongs to, or None."""
        with self.node.session(write=False) as s:
            row = s.exec(select(QueryResource).where(QueryResource.relay_id == rid)).first()
            return row.model_copy() if row else None

    def segments(self, query_id: str) -> list[QuerySegment]:
        """The query's segments by number."""
        with self.node.session(write=False) as s:
            return [
                g.model_copy()
                for g in s.exec(
                    select(QuerySegment)
                    .where(QuerySegment.query_id == query_id)
                    .order_by(col(QuerySegment.seq))
                )
            ]

    # ------------------------------------------------------------------ opening a query

    def open_query(
        self,
        *,
        query_id: str,
        upload_id: str,
        requester: str,
        business_type: str,
        catalog_version: int,
        persons: int,
        received_at: dt.datetime,
        plans: Sequence[ResourcePlan],
        deadline: Deadline | None,
        suspended: int = 0,
    ) -> None:
        """Record the query and its resources once (a repeat after a crash changes nothing);
        ``suspended`` persons without an authorization reference make it ``suspended``."""
        now = self.clock()
        kept = json.loads((self.folder(query_id) / PERSONS_AUDIT).read_text("utf-8"))
        people = [(str(d), a) for d, a in kept]  # keyed digests: the trail holds no ID number
        try:
            with self.node.session() as s:
                if s.get(Query, query_id) is not None:
                    return
                s.add(
                    Query(
                        bundle_id=query_id,
                        upload_id=upload_id,
                        requester=requester,
                        business_type=business_type,
                        catalog_version=catalog_version,
                        persons=persons,
                        state=(QueryState.SUSPENDED if suspended else QueryState.OPEN).value,
                        received_at=received_at,
                        due_date=deadline.due_date if deadline else None,
                        due_at=deadline.due_at if deadline else None,
                        updated_at=now,
                    )
                )
                for p in plans:
                    relayed = p.routing == AnsweredBy.PROVIDER.value
                    s.add(
                        QueryResource(
                            query_id=query_id,
                            resource=p.resource,
                            routing=p.routing,
                            provider=p.provider,
                            feedback_days=p.feedback_days,
                            due_date=p.deadline.due_date if p.deadline else None,
                            due_at=p.deadline.due_at if p.deadline else None,
                            relay_id=relay_id(query_id, p.resource) if relayed else None,
                        )
                    )
                s.flush()
                append_events(
                    s,
                    [
                        EventSpec(
                            requester,
                            "query.opened",
                            query_id,
                            {
                                "persons": persons,
                                "catalog_version": catalog_version,
                                "due_date": deadline.due_date.isoformat() if deadline else None,
                                "resources": [p.as_json() for p in plans],
                                "suspended": suspended,
                            },
                            persons=people,
                        )
                    ],
                    now=now,
                )
        except IntegrityError:  # another node process recorded it meanwhile
            if self.query(query_id) is None:
                raise

    # ------------------------------------------------------------------ reads for steps

    def request(self, query_id: str, resource: str) -> tuple[int, dict[str, Any]]:
        """(catalog version, the request of ``resource`` with its visible ``items``)."""
        body = json.loads((self.folder(query_id) / "application.json").read_text("utf-8"))
        for req in body["plans"]:
            if req["resource"] == resource:
                return int(body["catalog_version"]), req
        raise LookupError(resource)

    def catalog_resource(self, catalog_version: int, code: str) -> Resource:
        """The resource ``code`` as catalog version ``catalog_version`` defines it."""
        _, catalog = self.catalogs.load(catalog_version)
        resource = catalog.resource(code)
        assert resource is not None
        return resource

    # ------------------------------------------------------------------ segments

    def answer_folder(self, query_id: str, bundle_id: str) -> Path:
        """Where a provider's checked answer waits, merged (segment content), for route."""
        return self.folder(query_id) / ANSWERS / bundle_id

    def answer_facts(self, query_id: str, bundle_id: str) -> Path:
        """The checked answer's facts (counts, no personal data), written when its review
        ends; kept after the merge, so that the same answer reviewed again after a crash gets
        the same outcome."""
        return self.folder(query_id) / ANSWERS / f"{bundle_id}.json"

    def segment_folder(self, query_id: str, trigger: str) -> Path:
        """Where a segment's content waits until it is delivered."""
        return self.folder(query_id) / "segments" / _safe(trigger)

    def save_content(self, query_id: str, trigger: str, content: SegmentContent) -> None:
        """Record the prepared content's index in its folder (written last, atomically)."""
        content.write(self.segment_folder(query_id, trigger))

    def assign(
        self,
        query_id: str,
        trigger: str,
        updates: Mapping[str, Mapping[str, Any]],
    ) -> QuerySegment:
        """Assign the next segment to ``trigger`` and apply ``updates`` (resource -> fields of
        :class:`QueryResource`) in one transaction; the existing segment if already assigned.

        The segment is final when no resource is left waiting; a final segment closes the query.
        """
        for _ in range(5):
            now = self.clock()
            try:
                with self.node.session() as s:
                    found = _segment(s, query_id, trigger)
                    if found is not None:
                        return found
                    return self._assign(s, query_id, trigger, updates, now)
            except IntegrityError:
                continue
        raise RuntimeError(f"query {query_id}: could not assign a segment for {trigger}")

    def _assign(
        self,
        s: Session,
        query_id: str,
        trigger: str,
        updates: Mapping[str, Mapping[str, Any]],
        now: dt.datetime,
    ) -> QuerySegment:
        query = s.get(Query, query_id)
        assert query is not None
        last = s.exec(
            select(func.max(QuerySegment.seq)).where(QuerySegment.query_id == query_id)
        ).one()
        seq = int(last or 0) + 1
        rows = list(
            s.exec(
                select(QueryResource)
                .where(QueryResource.query_id == query_id)
                .order_by(col(QueryResource.id))
            )
        )
        for r in rows:
            for key, value in updates.get(r.resource, {}).items():
                setattr(r, key, value)
            if r.resource in updates:
                r.segment = seq
                s.add(r)
        final = not any(ResourceState(r.state).waiting for r in rows)
        segment = QuerySegment(
            query_id=query_id,
            seq=seq,
            trigger=trigger,
            final=final,
            statuses=json.dumps(_statuses(rows), ensure_ascii=False),
            created_at=now,
        )
        s.add(segment)
        if final:
            query.state, query.closed_at = QueryState.CLOSED.value, now
        query.updated_at = now
        s.add(query)
        s.flush()
        append_events(
            s,
            [
                EventSpec(
                    "node",
                    "query.segment",
                    query_id,
                    {
                        "segment": seq,
                        "trigger": trigger,
                        "final": final,
                        "states": {r.resource: r.state for r in rows},
                    },
                )
            ],
            now=now,
        )
        return segment.model_copy()

    def end_resource(
        self, query_id: str, resource: str, state: ResourceState, *, note: str, by: str
    ) -> QuerySegment:
        """End a resource without an answer (failed, terminated): a segment says so."""
        self.save_content(query_id, f"end:{resource}", SegmentContent([], {}))
        return self.assign(
            query_id,
            f"end:{resource}",
            {resource: {"state": state.value, "note": note[:500], "decided_by": by}},
        )

    def deliver_pending(self, query_id: str | None = None) -> int:
        """Deliver every assigned, unrecorded segment (of one query, or all); how many."""
        with self.node.session(write=False) as s:
            q = select(QuerySegment).where(col(QuerySegment.delivered_at).is_(None))
            if query_id is not None:
                q = q.where(QuerySegment.query_id == query_id)
            pending = [g.model_copy() for g in s.exec(q.order_by(col(QuerySegment.seq)))]
        for segment in pending:
            self._deliver(segment)
        return len(pending)

    def finish_closed(self) -> int:
        """Take the uploads of closed queries still ``routed`` to ``done``; how many.

        A query can close (its last answer merged by another worker) while the batch that
        routed it has not yet recorded its upload: that batch then records ``routed`` from a
        route that saw the query open. This sweep, run by every deadline check, repairs it.
        """
        # a read on the few routed uploads first: the runner asks after every batch
        with self.node.session(write=False) as s:
            stale = list(
                s.exec(
                    select(Upload.id)
                    .join(Query, col(Query.upload_id) == col(Upload.id))
                    .where(Upload.state == BundleState.ROUTED.value)
                    .where(Query.state == QueryState.CLOSED.value)
                ).all()
            )
        if not stale:
            return 0
        now = self.clock()
        with self.node.session() as s:
            for upload_id in stale:
                _finish_upload(s, upload_id, now)
        return len(stale)

    def _deliver(self, segment: QuerySegment) -> None:
        query = self.query(segment.query_id)
        assert query is not None
        folder = self.segment_folder(segment.query_id, segment.trigger)
        content = SegmentContent.read(folder)
        if content is None:  # assigned by a process that crashed before saving: rebuild
            log.warning("query %s segment %d: content missing", query.bundle_id, segment.seq)
            content = SegmentContent([], {})
        statuses = json.loads(segment.statuses)
        for entry in statuses:
            entry.update(content.entries.get(entry["resource"], {}))
        report = {
            "query_bundle_id": query.bundle_id,
            "segment": segment.seq,
            "final": segment.final,
            "business_type": query.business_type,
            "catalog_version": query.catalog_version,
            "due_date": query.due_date.isoformat() if query.due_date else None,
            "answered_at": as_utc(segment.created_at).isoformat(timespec="seconds"),
            "resources": statuses,
        }
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        (folder / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=2))
        members = [Member(name, folder / file) for name, file in content.members]
        members.append(Member("report.json", folder / "report.json", media_type="application/json"))
        waiting = [e["resource"] for e in statuses if ResourceState(e["state"]).waiting]
        fields = {
            "in_reply_to": query.bundle_id,
            "segment": segment.seq,
            "final": segment.final,
            "status": "answered"
            if all(e["state"] == ResourceState.ANSWERED.value for e in statuses)
            else ("partial" if segment.final else "pending"),
            "business_type": query.business_type,
            "resources": [e["resource"] for e in statuses],
            "waiting": waiting,
            "at": as_utc(segment.created_at).isoformat(),
        }
        now = self.clock()
        self.outbox.deliver(
            query.requester,
            result_name(query.bundle_id, segment.seq),
            members,
            kind=BundleKind.RESULT,
            fields=fields,
            bundle_id=result_bundle_id("result", query.bundle_id, str(segment.seq)),
            now=now,
        )
        with self.node.session() as s:
            row = s.get(QuerySegment, segment.id)
            assert row is not None
            row.delivered_at = now
            s.add(row)
            if segment.final:
                _finish_upload(s, query.upload_id, now)
        shutil.rmtree(folder, ignore_errors=True)
        if segment.final:
            for leftover in ("relay-work", "segments"):
                shutil.rmtree(self.folder(query.bundle_id) / leftover, ignore_errors=True)
            # answers merged but not used (a second answer to one relay): their result files
            answers = self.folder(query.bundle_id) / ANSWERS
            for unused in answers.iterdir() if answers.is_dir() else ():
                if unused.is_dir():
                    shutil.rmtree(unused, ignore_errors=True)


def _segment(s: Session, query_id: str, trigger: str) -> QuerySegment | None:
    row = s.exec(
        select(QuerySegment).where(
            QuerySegment.query_id == query_id, QuerySegment.trigger == trigger
        )
    ).first()
    return row.model_copy() if row else None


def _finish_upload(s: Session, upload_id: str, now: dt.datetime) -> None:
    """A closed query's upload leaves ``routed`` for ``done`` (decided by decisions.decide);
    an upload still being routed gets its final state from the runner instead."""
    up = s.get(Upload, upload_id)
    if up is None or up.state != BundleState.ROUTED.value:
        return
    facts = UploadFacts.of(up)
    t = decide(facts, QueryClosed(), RegistrySnapshot(), now)
    up.state, up.updated_at = t.state.value, now
    s.add(up)
    append_events(s, transition_events(t), now=now)
