"""Deadlines of relayed queries: overdue notices, escalation, extension and termination.

Every relayed resource has a deadline in working days (:mod:`exchange_server.pipeline.plans`).
:meth:`DeadlineKeeper.tick` (the pipeline process runs it every ``[deadlines] tick_seconds``,
``exchange-server query tick`` runs it once) does, with the injected clock:

- a deadline the calendar could not compute when the query arrived (a year without data) is
  computed as soon as the calendar covers it, and both parties are told (notice ``deadline``);
- a waiting resource whose deadline has passed becomes ``overdue``: the provider and the
  requester each get a signed notice (``overdue``); a late answer is still taken;
- an overdue resource still unanswered ``escalate_after_days`` working days after its due date
  is escalated to the administrator (audit ``deadline.escalated``, an error in the log, shown by
  ``exchange-server query list``);
- notices and segments a crash left undelivered are delivered, and the upload of a query
  that closed while its own routing was still being recorded leaves ``routed`` for ``done``.

:meth:`DeadlineKeeper.extend` and :meth:`DeadlineKeeper.terminate` are the administrator's
decisions (force majeure, 浙江 四(一)3), recorded with who decided and why, and notified.

Exactly once: a notice is recorded (``query_notice``, unique name) in the transaction that
changes the resource, and delivered after under that name (the outbox writes a name once).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlmodel import Session, col, select

from exchange_common.errors import InputError
from exchange_common.masking import mask_text
from exchange_common.workdays import CalendarGap, Deadline, WorkCalendar
from exchange_server.config import DeadlineConfig
from exchange_server.outbox.writer import result_bundle_id
from exchange_server.pipeline.content import SegmentContent
from exchange_server.pipeline.queries import QueryBook
from exchange_server.store.audit import EventSpec, append_events
from exchange_server.store.models import (
    Query,
    QueryNotice,
    QueryResource,
    QuerySegment,
    QueryState,
    ResourceState,
    as_utc,
)
from pki.bundle import BundleKind, Member

__all__ = ["NOTICE_KINDS", "DeadlineKeeper", "TickReport"]

log = logging.getLogger(__name__)

_T = TypeVar("_T", dt.date, dt.datetime)

#: What a notice says.
NOTICE_KINDS = ("overdue", "extended", "terminated", "deadline")

_WAITING = [s.value for s in ResourceState if s.waiting]


@dataclass
class TickReport:
    """What one :meth:`DeadlineKeeper.tick` did (counts only)."""

    deadlines_set: int = 0
    overdue: int = 0
    queries_overdue: int = 0
    escalated: int = 0
    expired: int = 0
    notices: int = 0
    closed_uploads: int = 0
    segments: int = 0
    calendar_gaps: list[int] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dict(self.__dict__)

    def counted(
        self, compute: Callable[[_T, int], Deadline], start: _T, days: int
    ) -> Deadline | None:
        """``compute(start, days)``, or None when it needs a year without working-day data (the
        year is added to :attr:`calendar_gaps`, once)."""
        try:
            return compute(start, days)
        except CalendarGap as e:
            if e.year not in self.calendar_gaps:
                self.calendar_gaps.append(e.year)
            return None


def _iso(day: dt.date | None) -> str | None:
    return day.isoformat() if day else None


class DeadlineKeeper:
    """Deadline handling over a :class:`QueryBook` (see the module text)."""

    def __init__(
        self,
        book: QueryBook,
        config: DeadlineConfig,
        *,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.book = book
        self.config = config
        #: The time deadlines are judged at (default: the book's clock, which also stamps
        #: what is sealed); tests move it without touching signing times.
        self.clock = clock or book.clock

    # ------------------------------------------------------------------ the periodic check

    def tick(self) -> TickReport:
        """Apply every deadline that is due at the book's clock; deliver what is owed."""
        report = TickReport()
        calendar = self.book.calendar()
        self._set_missing(calendar, report)
        self._mark_overdue(report)
        self._escalate(calendar, report)
        self._expire_suspended(calendar, report)
        report.segments = self.book.deliver_pending()
        report.closed_uploads = self.book.finish_closed()
        report.notices = self.deliver_notices()
        return report

    def _waiting(self, s: Session) -> list[QueryResource]:
        return list(
            s.exec(
                select(QueryResource)
                .where(col(QueryResource.state).in_(_WAITING))
                .where(QueryResource.routing == "provider")
                .order_by(col(QueryResource.id))
            )
        )

    def _set_missing(self, calendar: WorkCalendar, report: TickReport) -> None:
        now = self.clock()
        with self.book.node.session() as s:
            events: list[EventSpec] = []
            for r in self._waiting(s):
                if r.due_date is not None:
                    continue
                query = s.get(Query, r.query_id)
                assert query is not None
                d = report.counted(calendar.deadline, as_utc(query.received_at), r.feedback_days)
                if d is None:
                    continue
                r.due_date, r.due_at = d.due_date, d.due_at
                s.add(r)
                self._notify(s, r, query, "deadline", {"due_date": _iso(d.due_date)}, now)
                events.append(
                    EventSpec("node", "deadline.set", r.query_id, _detail(r, due=d.due_date))
                )
                report.deadlines_set += 1
            for query in s.exec(select(Query).where(col(Query.due_date).is_(None))):
                days = self._query_days(query)
                d = report.counted(calendar.deadline, as_utc(query.received_at), days)
                if d is None:
                    continue
                query.due_date, query.due_at = d.due_date, d.due_at
                s.add(query)
            append_events(s, events, now=now)
        for year in report.calendar_gaps:
            log.error("E_CALENDAR: deadlines need %d: import it (exchange-server calendar)", year)

    def _query_days(self, query: Query) -> int:
        _, catalog = self.book.catalogs.load(query.catalog_version)
        return catalog.query_days

    def _mark_overdue(self, report: TickReport) -> None:
        now = self.clock()
        with self.book.node.session() as s:
            events: list[EventSpec] = []
            for r in self._waiting(s):
                if r.state == ResourceState.OVERDUE.value or r.due_at is None:
                    continue
                if as_utc(r.due_at) > now:
                    continue
                query = s.get(Query, r.query_id)
                assert query is not None
                r.state, r.overdue_at = ResourceState.OVERDUE.value, now
                s.add(r)
                self._notify(s, r, query, "overdue", {"due_date": _iso(r.due_date)}, now)
                events.append(EventSpec("node", "deadline.overdue", r.query_id, _detail(r)))
                log.warning(
                    "query %s: %s from %s is overdue (due %s)",
                    r.query_id,
                    r.resource,
                    r.provider,
                    _iso(r.due_date),
                )
                report.overdue += 1
            # the whole verification's deadline (浙江 四(一): 10 working days)
            for query in s.exec(
                select(Query)
                .where(Query.state == QueryState.OPEN.value)
                .where(col(Query.overdue_at).is_(None))
                .where(col(Query.due_at).is_not(None))
            ):
                assert query.due_at is not None
                if as_utc(query.due_at) > now:
                    continue
                query.overdue_at = now
                s.add(query)
                events.append(
                    EventSpec(
                        "node",
                        "query.overdue",
                        query.bundle_id,
                        {"due_date": _iso(query.due_date), "requester": query.requester},
                    )
                )
                log.warning(
                    "query %s from %s: the whole verification was due %s and is still open",
                    query.bundle_id,
                    query.requester,
                    _iso(query.due_date),
                )
                report.queries_overdue += 1
            append_events(s, events, now=now)

    def _escalate(self, calendar: WorkCalendar, report: TickReport) -> None:
        now = self.clock()
        with self.book.node.session() as s:
            events: list[EventSpec] = []
            for r in self._waiting(s):
                if r.state != ResourceState.OVERDUE.value or r.escalated_at is not None:
                    continue
                if r.due_date is None:
                    continue
                # the end of the N-th working day after the due date
                days = self.config.escalate_after_days
                limit = report.counted(calendar.period_end, r.due_date, days)
                if limit is None or limit.due_at > now:
                    continue
                r.escalated_at = now
                s.add(r)
                events.append(EventSpec("node", "deadline.escalated", r.query_id, _detail(r)))
                log.error(
                    "query %s: %s from %s is %d working days overdue: escalated to the "
                    "administrator (exchange-server query show %s)",
                    r.query_id,
                    r.resource,
                    r.provider,
                    self.config.escalate_after_days,
                    r.query_id,
                )
                report.escalated += 1
            append_events(s, events, now=now)

    def _expire_suspended(self, calendar: WorkCalendar, report: TickReport) -> None:
        """Close queries suspended longer than ``suspend_limit_days`` working days (浙江 六(二))
        with a final segment: every resource ``terminated``, the reason in its note."""
        now = self.clock()
        days = self.config.suspend_limit_days
        for query in self.book.queries(QueryState.SUSPENDED.value):
            limit = report.counted(calendar.deadline, as_utc(query.received_at), days)
            if limit is None or limit.due_at > now:
                continue
            note = f"suspended for {days} working days without the missing authorizations"
            self.book.save_content(query.bundle_id, "expired", SegmentContent([], {}))
            waiting = [r.resource for r in self.book.resources(query.bundle_id)]
            self.book.assign(
                query.bundle_id,
                "expired",
                {
                    code: {
                        "state": ResourceState.TERMINATED.value,
                        "note": note,
                        "decided_by": "node",
                    }
                    for code in waiting
                },
            )
            with self.book.node.session() as s:
                append_events(
                    s,
                    [EventSpec("node", "query.expired", query.bundle_id, {"days": days})],
                    now=now,
                )
            log.warning("query %s: %s; closed", query.bundle_id, note)
            report.expired += 1

    # ------------------------------------------------------------------ the administrator

    def _resource(self, s: Session, query_id: str, resource: str) -> tuple[Query, QueryResource]:
        query = s.get(Query, query_id)
        row = s.exec(
            select(QueryResource).where(
                QueryResource.query_id == query_id, QueryResource.resource == resource
            )
        ).first()
        if query is None or row is None:
            raise InputError(
                f"no resource {resource} in a query {query_id} on this node", code="E_NOT_FOUND"
            )
        if not ResourceState(row.state).waiting or row.routing != "provider":
            raise InputError(
                f"{resource} of query {query_id} is {row.state} ({row.routing}): only a relayed "
                "resource still waiting for its answer can be extended or terminated",
                code="E_QUERY_STATE",
            )
        return query, row

    def extend(
        self, query_id: str, resource: str, days: int, *, reason: str, by: str
    ) -> QueryResource:
        """Move a waiting relayed resource's deadline by ``days`` working days (from its current
        due date), recording who decided and why; both parties are notified.

        Raises InputError ``E_NOT_FOUND``, ``E_QUERY_STATE`` (answered or ended), ``E_INPUT``
        (days outside 1–60, empty reason or name) or ``E_CALENDAR`` (a year without data).
        """
        _decision_args(reason, by)
        if isinstance(days, bool) or not 1 <= days <= 60:
            raise InputError("--days must be a whole number of working days from 1 to 60")
        calendar = self.book.calendar()
        now = self.clock()
        with self.book.node.session() as s:
            query, row = self._resource(s, query_id, resource)
            if row.due_date is None:
                raise InputError(
                    f"{resource} of query {query_id} has no deadline yet (calendar missing)",
                    code="E_CALENDAR",
                )
            old = row.due_date
            new = calendar.period_end(old, days)  # CalendarGap: E_CALENDAR
            new_date = new.due_date
            row.due_date, row.due_at = new.due_date, new.due_at
            row.state, row.escalated_at = ResourceState.EXTENDED.value, None
            row.decided_by, row.note = by[:64], mask_text(reason)[:500]
            s.add(row)
            extra = {"due_date": new_date.isoformat(), "previous_due_date": old.isoformat()}
            self._notify(s, row, query, "extended", extra | {"reason": row.note}, now)
            append_events(
                s,
                [
                    EventSpec(
                        by[:64],
                        "deadline.extended",
                        query_id,
                        _detail(row) | extra | {"days": days, "reason": row.note},
                    )
                ],
                now=now,
            )
            done = row.model_copy()
        self.deliver_notices()
        return done

    def terminate(self, query_id: str, resource: str, *, reason: str, by: str) -> QuerySegment:
        """End a waiting relayed resource without an answer (force majeure, 浙江 四(一)3): the
        requester gets a segment saying ``terminated``, the provider a notice; recorded with
        who decided and why. Raises InputError ``E_NOT_FOUND`` or ``E_QUERY_STATE``."""
        _decision_args(reason, by)
        note = mask_text(reason)[:500]
        now = self.clock()
        with self.book.node.session() as s:
            query, row = self._resource(s, query_id, resource)
            self._notify(s, row, query, "terminated", {"reason": note}, now, requester=False)
            append_events(
                s,
                [
                    EventSpec(
                        by[:64], "deadline.terminated", query_id, _detail(row) | {"reason": note}
                    )
                ],
                now=now,
            )
        segment = self.book.end_resource(
            query_id, resource, ResourceState.TERMINATED, note=note, by=by[:64]
        )
        self.book.deliver_pending(query_id)
        self.deliver_notices()
        return segment

    # ------------------------------------------------------------------ notices

    def _notify(
        self,
        s: Session,
        r: QueryResource,
        query: Query,
        kind: str,
        extra: dict[str, Any],
        now: dt.datetime,
        *,
        requester: bool = True,
    ) -> None:
        """Record the notices of ``kind`` for the provider and (unless told not to) the
        requester, once: their names are functions of what they say."""
        tag = str(extra.get("due_date") or "end").replace("-", "")
        common = {
            "notice": kind,
            "resource": r.resource,
            "at": now.astimezone(dt.UTC).isoformat(),
            **extra,
        }
        owed: list[tuple[str, str, dict[str, Any]]] = []
        if r.relay_id is not None:
            owed.append(
                (
                    r.provider,
                    f"notice-{kind}-{r.relay_id}-{tag}.bundle",
                    common | {"relay_id": r.relay_id},
                )
            )
        if requester:
            owed.append(
                (
                    query.requester,
                    f"notice-{kind}-{query.bundle_id}-{r.resource}-{tag}.bundle",
                    common | {"query_id": query.bundle_id, "answered_by": r.routing},
                )
            )
        for dept, name, fields in owed:
            if s.exec(select(QueryNotice).where(QueryNotice.name == name)).first() is not None:
                continue
            s.add(
                QueryNotice(
                    query_id=query.bundle_id,
                    resource=r.resource,
                    dept=dept,
                    kind=kind,
                    name=name,
                    fields=json.dumps(fields, ensure_ascii=False),
                    created_at=now,
                )
            )

    def notices(self, query_id: str | None = None) -> list[QueryNotice]:
        """Recorded notices (of one query, or all), oldest first."""
        with self.book.node.session(write=False) as s:
            q = select(QueryNotice)
            if query_id is not None:
                q = q.where(QueryNotice.query_id == query_id)
            return [n.model_copy() for n in s.exec(q.order_by(col(QueryNotice.id)))]

    def deliver_notices(self) -> int:
        """Deliver every recorded, undelivered notice; how many."""
        pending = [n for n in self.notices() if n.delivered_at is None]
        for notice in pending:
            self._deliver(notice)
        return len(pending)

    def _deliver(self, notice: QueryNotice) -> None:
        folder = self.book.folder(notice.query_id) / "notices"
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        body = folder / f"{notice.name}.json"
        body.write_text(
            json.dumps(json.loads(notice.fields), ensure_ascii=False, indent=2), "utf-8"
        )
        now = self.book.clock()
        try:
            self.book.outbox.deliver(
                notice.dept,
                notice.name,
                [Member("notice.json", body, media_type="application/json")],
                kind=BundleKind.NOTICE,
                fields=json.loads(notice.fields),
                bundle_id=result_bundle_id("notice", notice.name),
                now=now,
            )
        except InputError as e:
            if e.code != "E_UNKNOWN_DEPT":
                raise
            log.error("notice %s: department %s is not registered", notice.name, notice.dept)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        with self.book.node.session() as s:
            row = s.get(QueryNotice, notice.id)
            assert row is not None
            row.delivered_at = now
            s.add(row)


def _decision_args(reason: str, by: str) -> None:
    if not reason.strip():
        raise InputError("--reason is required: say why (浙江 四(一)3)")
    if not by.strip():
        raise InputError("--by is required: who decided")


def _detail(r: QueryResource, *, due: dt.date | None = None) -> dict[str, Any]:
    return {
        "resource": r.resource,
        "provider": r.provider,
        "relay": r.relay_id,
        "due_date": _iso(due or r.due_date),
    }
