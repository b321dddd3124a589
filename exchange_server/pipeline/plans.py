"""How each requested resource of a query is answered, decided when the query arrives.

The catalog version in force says who answers (``answered_by``) and in how many working days
(``feedback_days``; the whole verification ``query_days``); the deadlines count from the day
after the query reached the node, in Asia/Shanghai (:mod:`exchange_common.workdays`). The plan
is kept as JSON beside the query (``application.json``) so every later step reads the same one.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from exchange_common.catalog import AnsweredBy, Catalog, check_access
from exchange_common.workdays import CalendarGap, Deadline, WorkCalendar

__all__ = [
    "ResourcePlan",
    "deadline_from_json",
    "deadline_json",
    "plan_from_json",
    "plan_json",
    "plan_resources",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResourcePlan:
    """How one requested resource is answered, decided when the query arrives."""

    resource: str
    name: str
    routing: str
    provider: str
    feedback_days: int
    items: tuple[str, ...]
    time_range: str
    deadline: Deadline | None

    def as_json(self) -> dict[str, Any]:
        """The receipt's and the status's view (no personal data)."""
        return {
            "resource": self.resource,
            "answered_by": self.routing,
            "provider": self.provider,
            "feedback_days": self.feedback_days,
            "due_date": self.deadline.due_date.isoformat() if self.deadline else None,
        }


def plan_resources(
    requests: Sequence[Any],
    catalog: Catalog,
    requester: str,
    business_type: str,
    received_at: dt.datetime,
    calendar: WorkCalendar,
) -> tuple[list[ResourcePlan], Deadline | None]:
    """Per requested resource its routing and deadline, and the whole query's deadline.

    ``requests`` are the application's :class:`~exchange_server.pipeline.workflow.ResourceRequest`
    values, already allowed by the access rule. A deadline the calendar cannot compute (a year
    without working-day data) is None and logged as ``E_CALENDAR``: never a guess.
    """
    plans: list[ResourcePlan] = []
    for req in requests:
        resource = catalog.resource(req.code)
        decision = check_access(catalog, requester, business_type, req.code, req.items)
        assert resource is not None and decision.allowed  # checked by review
        deadline = None
        if resource.answered_by is AnsweredBy.PROVIDER:
            deadline = _deadline(calendar, received_at, resource.feedback_days)
        plans.append(
            ResourcePlan(
                resource=req.code,
                name=resource.name,
                routing=resource.answered_by.value,
                provider=resource.provider,
                feedback_days=resource.feedback_days,
                items=tuple(decision.items),
                time_range=req.time_range,
                deadline=deadline,
            )
        )
    return plans, _deadline(calendar, received_at, catalog.query_days)


def _deadline(calendar: WorkCalendar, received_at: dt.datetime, days: int) -> Deadline | None:
    try:
        return calendar.deadline(received_at, days)
    except CalendarGap as e:
        log.error("E_CALENDAR: %s", e.message)
        return None


def plan_json(p: ResourcePlan) -> dict[str, Any]:
    """The plan as kept in ``application.json``."""
    return {
        "resource": p.resource,
        "name": p.name,
        "routing": p.routing,
        "provider": p.provider,
        "feedback_days": p.feedback_days,
        "items": list(p.items),
        "time_range": p.time_range,
        "deadline": deadline_json(p.deadline),
    }


def deadline_json(d: Deadline | None) -> dict[str, str] | None:
    """A deadline as JSON (ISO date and instant), or None."""
    if d is None:
        return None
    return {"due_date": d.due_date.isoformat(), "due_at": d.due_at.isoformat()}


def deadline_from_json(d: Mapping[str, str] | None) -> Deadline | None:
    """The inverse of :func:`deadline_json`."""
    if d is None:
        return None
    return Deadline(dt.date.fromisoformat(d["due_date"]), dt.datetime.fromisoformat(d["due_at"]))


def plan_from_json(p: Mapping[str, Any]) -> ResourcePlan:
    """The inverse of :func:`plan_json`."""
    return ResourcePlan(
        resource=p["resource"],
        name=p["name"],
        routing=p["routing"],
        provider=p["provider"],
        feedback_days=int(p["feedback_days"]),
        items=tuple(p["items"]),
        time_range=p["time_range"],
        deadline=deadline_from_json(p.get("deadline")),
    )
