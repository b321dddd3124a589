"""Imported working-day calendars in the state store (table ``calendar_year``).

The node's calendar is the ``chinese-calendar`` package plus every year an operator imported
(:mod:`exchange_common.workdays`). Each imported year is stored with the SHA-256 of its
canonical content, checked again when the calendar is loaded: a row edited behind the node's
back would move deadlines silently, so it is refused instead (fail closed). Every import is an
audit event (``calendar.imported``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from sqlmodel import Session, col, select

from exchange_common.errors import StoreError
from exchange_common.workdays import WorkCalendar, YearDays
from exchange_server.store.audit import append_event
from exchange_server.store.models import CalendarYear, as_utc

__all__ = [
    "canonical_json",
    "import_years",
    "imported_years",
    "load_calendar",
    "year_days",
]


def _iso_list(days: frozenset[dt.date]) -> list[str]:
    return sorted(d.isoformat() for d in days)


def canonical_json(days: YearDays) -> str:
    """The canonical content of ``days`` whose SHA-256 the store keeps: compact JSON with
    sorted keys and sorted ISO dates, UTF-8 characters unescaped. Equal schedules give equal
    text."""
    content = {
        "year": days.year,
        "source": days.source,
        "holidays": _iso_list(days.holidays),
        "workdays": _iso_list(days.workdays),
    }
    return json.dumps(content, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _sha256(days: YearDays) -> str:
    return hashlib.sha256(canonical_json(days).encode()).hexdigest()


def year_days(row: CalendarYear) -> YearDays:
    """The schedule a stored row holds.

    Raises :class:`StoreError` ``E_STORE`` when the row is unreadable or does not match its
    recorded SHA-256 (edited outside the node).
    """
    try:
        days = YearDays(
            year=row.year,
            holidays=frozenset(dt.date.fromisoformat(d) for d in json.loads(row.holidays)),
            workdays=frozenset(dt.date.fromisoformat(d) for d in json.loads(row.workdays)),
            source=row.source,
        )
    except (ValueError, TypeError) as e:
        raise StoreError(
            f"calendar year {row.year} in the state store is unreadable", code="E_STORE"
        ) from e
    if _sha256(days) != row.sha256:
        raise StoreError(
            f"calendar year {row.year} in the state store does not match its recorded SHA-256: "
            "import the year's calendar file again and audit the change",
            code="E_STORE",
        )
    return days


def imported_years(session: Session) -> list[CalendarYear]:
    """Every imported year's row, by year (the rows are not checked; see :func:`year_days`)."""
    return list(session.exec(select(CalendarYear).order_by(col(CalendarYear.year))))


def load_calendar(session: Session) -> WorkCalendar:
    """The node's calendar: the package's years plus every imported year (which wins).

    Raises :class:`StoreError` ``E_STORE`` when a stored year is unreadable or altered.
    """
    return WorkCalendar({row.year: year_days(row) for row in imported_years(session)})


def import_years(
    session: Session, years: Mapping[int, YearDays], *, actor: str, now: dt.datetime
) -> list[int]:
    """Store ``years`` (from :func:`exchange_common.workdays.parse_calendar_file`), inserting
    or replacing each, inside the caller's transaction; return the years imported, sorted.

    Appends one audit event ``calendar.imported`` per year (subject: the year; detail: year,
    source, sha256, holiday and workday counts, and the replaced content's sha256 or null).
    Raises :class:`ValueError` when a key is not its value's year; nothing is written then.
    """
    for year, days in years.items():
        if days.year != year:
            raise ValueError(f"calendar keyed {year} holds year {days.year}")
    when = as_utc(now)
    done = []
    for year in sorted(years):
        days = years[year]
        digest = _sha256(days)
        fields: dict[str, Any] = {
            "source": days.source,
            "holidays": json.dumps(_iso_list(days.holidays)),
            "workdays": json.dumps(_iso_list(days.workdays)),
            "sha256": digest,
            "imported_at": when,
            "imported_by": actor,
        }
        row = session.get(CalendarYear, year)
        previous = row.sha256 if row is not None else None
        if row is None:
            row = CalendarYear(year=year, **fields)
        else:
            row.sqlmodel_update(fields)
        session.add(row)
        session.flush()
        append_event(
            session,
            actor=actor,
            action="calendar.imported",
            subject=str(year),
            detail={
                "year": year,
                "source": days.source,
                "sha256": digest,
                "holidays": len(days.holidays),
                "workdays": len(days.workdays),
                "replaced_sha256": previous,
            },
            now=now,
        )
        done.append(year)
    return done
