"""Imported calendar years in the state store, on SQLite and PostgreSQL: import, load,
replace, the audit event, and a row altered outside the node.

The 2027 year is FICTIONAL TEST DATA (tests/common/calendargen.py).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json

import pytest
from sqlalchemy import Engine, inspect
from sqlmodel import Session, select

from exchange_common.errors import StoreError
from exchange_common.workdays import PACKAGE_SOURCE, CalendarGap
from exchange_server.store.audit import verify_chain
from exchange_server.store.calendar import (
    canonical_json,
    import_years,
    imported_years,
    load_calendar,
)
from exchange_server.store.models import AuditEvent, CalendarYear
from tests.common.calendargen import FICTIONAL_2027

NOW = dt.datetime(2026, 12, 2, 9, 30, tzinfo=dt.UTC)
D = dt.date


def _events(s: Session) -> list[AuditEvent]:
    return list(s.exec(select(AuditEvent).where(AuditEvent.action == "calendar.imported")))


def test_the_table_exists(engine: Engine) -> None:
    assert "calendar_year" in inspect(engine).get_table_names()


def test_an_empty_store_has_only_the_package(engine: Engine) -> None:
    with Session(engine) as s:
        assert imported_years(s) == []
        cal = load_calendar(s)
    assert cal.coverage()[-1] == (2026, PACKAGE_SOURCE)
    with pytest.raises(CalendarGap):
        cal.is_workday(D(2027, 1, 5))


def test_import_then_load(engine: Engine) -> None:
    with Session(engine) as s:
        assert import_years(s, {2027: FICTIONAL_2027}, actor="operator", now=NOW) == [2027]
        s.commit()
    with Session(engine) as s:
        (row,) = imported_years(s)
        cal = load_calendar(s)
        events = _events(s)
        assert verify_chain(s) == 1
    assert (row.year, row.source, row.imported_by) == (2027, FICTIONAL_2027.source, "operator")
    assert row.imported_at.replace(tzinfo=dt.UTC) == NOW  # SQLite hands back naive UTC
    assert json.loads(row.holidays) == sorted(d.isoformat() for d in FICTIONAL_2027.holidays)
    assert json.loads(row.workdays) == ["2027-01-09", "2027-02-13", "2027-10-09"]
    assert row.sha256 == hashlib.sha256(canonical_json(FICTIONAL_2027).encode()).hexdigest()
    assert cal.year_days(2027) == FICTIONAL_2027
    assert cal.is_workday(D(2027, 1, 9)) and not cal.is_workday(D(2027, 1, 4))
    assert cal.coverage()[-2:] == [(2026, PACKAGE_SOURCE), (2027, FICTIONAL_2027.source)]
    (event,) = events
    assert (event.actor, event.subject) == ("operator", "2027")
    assert json.loads(event.detail) == {
        "year": 2027,
        "source": FICTIONAL_2027.source,
        "sha256": row.sha256,
        "holidays": 26,
        "workdays": 3,
        "replaced_sha256": None,
    }


def test_import_replaces_a_year_and_audits_both(engine: Engine) -> None:
    changed = dataclasses.replace(
        FICTIONAL_2027,
        workdays=FICTIONAL_2027.workdays - {D(2027, 1, 9)},
        source="TEST DATA: fictional 2027 schedule, corrected",
    )
    with Session(engine) as s:
        import_years(s, {2027: FICTIONAL_2027}, actor="a", now=NOW)
        s.commit()
        first = imported_years(s)[0].sha256
    with Session(engine) as s:
        import_years(s, {2027: changed}, actor="b", now=NOW + dt.timedelta(hours=1))
        s.commit()
    with Session(engine) as s:
        rows = imported_years(s)
        cal = load_calendar(s)
        events = _events(s)
        assert verify_chain(s) == 2
    assert [r.year for r in rows] == [2027] and rows[0].source == changed.source
    assert rows[0].imported_by == "b"
    assert not cal.is_workday(D(2027, 1, 9))  # the replaced Saturday workday is gone
    details = [json.loads(e.detail) for e in events]
    assert [d["replaced_sha256"] for d in details] == [None, first]
    assert details[1]["sha256"] == rows[0].sha256 != first


def test_several_years_in_one_import(engine: Engine) -> None:
    y2028 = dataclasses.replace(
        FICTIONAL_2027,
        year=2028,
        holidays=frozenset(d.replace(year=2028) for d in FICTIONAL_2027.holidays),
        workdays=frozenset(),
        source="TEST DATA: fictional 2028 schedule",
    )
    with Session(engine) as s:
        assert import_years(s, {2028: y2028, 2027: FICTIONAL_2027}, actor="o", now=NOW) == [
            2027,
            2028,
        ]
        s.commit()
    with Session(engine) as s:
        assert [r.year for r in imported_years(s)] == [2027, 2028]
        assert [e.subject for e in _events(s)] == ["2027", "2028"]


def test_an_import_rolled_back_leaves_nothing(engine: Engine) -> None:
    with Session(engine) as s:
        import_years(s, {2027: FICTIONAL_2027}, actor="o", now=NOW)
        s.rollback()
    with Session(engine) as s:
        assert imported_years(s) == [] and _events(s) == []


def test_a_mismatched_key_is_refused_before_writing(engine: Engine) -> None:
    with Session(engine) as s:
        with pytest.raises(ValueError, match="2028"):
            import_years(s, {2028: FICTIONAL_2027}, actor="o", now=NOW)
        s.commit()
    with Session(engine) as s:
        assert imported_years(s) == [] and _events(s) == []


@pytest.mark.parametrize(
    ("column", "value"),
    [("holidays", '["2027-01-01"]'), ("source", "edited"), ("workdays", "not json")],
)
def test_a_row_altered_outside_the_node_is_refused(engine: Engine, column: str, value: str) -> None:
    """Tampering with a stored year (to move deadlines) fails closed when the calendar loads."""
    with Session(engine) as s:
        import_years(s, {2027: FICTIONAL_2027}, actor="o", now=NOW)
        s.commit()
    with Session(engine) as s:
        row = s.get(CalendarYear, 2027)
        assert row is not None
        setattr(row, column, value)
        s.add(row)
        s.commit()
    with Session(engine) as s, pytest.raises(StoreError) as info:
        load_calendar(s)
    assert info.value.code == "E_STORE" and "calendar year 2027" in info.value.message
