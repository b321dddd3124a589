"""Schedule arithmetic for comparison rules, and the stamps and names of their bundles.

Pure functions of the rule's schedule, the last run and ``now`` (aware datetimes only; a naive
one is a ``ValueError``): :func:`next_due`, :func:`slot_for`, :func:`stamp_of`,
:func:`bundle_name`. No I/O.
"""

from __future__ import annotations

import datetime as dt

from exchange_server.data.compare.rules import Schedule

#: After a failed attempt the schedule tries again no sooner than this (a missing dataset must
#: not turn every pipeline tick into an audit event).
RETRY_AFTER = dt.timedelta(hours=1)
_STAMP_FORMAT = "%Y%m%dT%H%M%SZ"


def _utc(when: dt.datetime) -> dt.datetime:
    if when.tzinfo is None:
        raise ValueError("naive datetime: pass an aware time")
    return when.astimezone(dt.UTC)


def _period_start(kind: str, when: dt.datetime) -> dt.datetime:
    day = _utc(when).replace(hour=0, minute=0, second=0, microsecond=0)
    if kind == "weekly":
        return day - dt.timedelta(days=day.weekday())
    if kind == "monthly":
        return day.replace(day=1)
    return day


def _next_period(kind: str, start: dt.datetime) -> dt.datetime:
    if kind == "weekly":
        return start + dt.timedelta(days=7)
    if kind == "monthly":
        year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
        return start.replace(year=year, month=month, day=1)
    return start + dt.timedelta(days=1)


def next_due(
    schedule: Schedule,
    last_run: dt.datetime | None,
    *,
    now: dt.datetime,
    last_failure: dt.datetime | None = None,
) -> dt.datetime | None:
    """When the rule is next due (due when that is at or before ``now``); None for ``manual``.

    Calendar schedules (UTC periods: a day, an ISO week from Monday, a month) are due once per
    period: at the start of the period after the one of ``last_run``. ``every_days`` is due
    ``N`` days after ``last_run``. A rule that never ran is due at ``now``. A failure after the
    last run puts the next attempt at least :data:`RETRY_AFTER` after the failure.
    """
    if schedule.kind == "manual":
        return None
    if last_run is None:
        due = _utc(now)
    elif schedule.kind == "every_days":
        due = _utc(last_run) + dt.timedelta(days=schedule.every_days)
    else:
        due = _next_period(schedule.kind, _period_start(schedule.kind, last_run))
    if last_failure is not None and (last_run is None or last_failure > last_run):
        due = max(due, _utc(last_failure) + RETRY_AFTER)
    return due


def slot_for(schedule: Schedule, last_run: dt.datetime | None, *, now: dt.datetime) -> dt.datetime:
    """The stamp time of a scheduled run at ``now``: the start of the current period (calendar
    schedules), ``last_run`` + N days (``every_days``), or the start of today (never ran).

    A function of the schedule and the last run, not of the clock's seconds: a run retried after
    a crash gets the same stamp, hence the same bundle, and delivers nothing twice.
    """
    if schedule.kind == "every_days" and last_run is not None:
        return _utc(last_run) + dt.timedelta(days=schedule.every_days)
    kind = schedule.kind if schedule.kind in ("weekly", "monthly") else "daily"
    return _period_start(kind, now)


def stamp_of(when: dt.datetime) -> str:
    """The UTC stamp in bundle names: ``20261122T080000Z``."""
    return _utc(when).strftime(_STAMP_FORMAT)


def bundle_name(rule: str, stamp: str) -> str:
    """``compare-<rule>-<stamp>.bundle``."""
    return f"compare-{rule}-{stamp}.bundle"
