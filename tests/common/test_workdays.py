"""Working days and deadlines against the State Council's published 2026 schedule.

The 2026 schedule below is written out by hand from 国务院办公厅关于2026年部分节假日安排的通知
(国办发明电〔2025〕7号), not computed by the library under test; every expected deadline was
counted by hand on a 2026 calendar. ``test_the_package_agrees_with_the_published_2026_schedule``
checks the transcription against ``chinese_calendar`` (the source the node uses): they agree
on every date.

The 2027 schedule used here (tests/common/calendargen.py) is FICTIONAL TEST DATA (the State
Council had not published 2027 when this was written): it only checks that an imported year is
used.
"""

from __future__ import annotations

import datetime as dt
import pickle

import chinese_calendar
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange_common.errors import InputError
from exchange_common.workdays import (
    PACKAGE_SOURCE,
    SHANGHAI,
    CalendarGap,
    Deadline,
    WorkCalendar,
    YearDays,
    local_date,
)
from tests.common.calendargen import FICTIONAL_2027

D = dt.date
UTC = dt.UTC


def _span(first: dt.date, last: dt.date) -> set[dt.date]:
    return {first + dt.timedelta(days=i) for i in range((last - first).days + 1)}


#: 2026 days off (放假), every day of each period as the notice lists them.
OFF_2026 = (
    _span(D(2026, 1, 1), D(2026, 1, 3))  # 元旦
    | _span(D(2026, 2, 15), D(2026, 2, 23))  # 春节
    | _span(D(2026, 4, 4), D(2026, 4, 6))  # 清明
    | _span(D(2026, 5, 1), D(2026, 5, 5))  # 劳动节
    | _span(D(2026, 6, 19), D(2026, 6, 21))  # 端午
    | _span(D(2026, 9, 25), D(2026, 9, 27))  # 中秋
    | _span(D(2026, 10, 1), D(2026, 10, 7))  # 国庆节
)
#: 2026 adjusted workdays (调休上班).
WORKED_2026 = {
    D(2026, 1, 4),  # Sunday, 元旦
    D(2026, 2, 14),  # Saturday, 春节
    D(2026, 2, 28),  # Saturday, 春节
    D(2026, 5, 9),  # Saturday, 劳动节
    D(2026, 9, 20),  # Sunday, 国庆节
    D(2026, 10, 10),  # Saturday, 国庆节
}


@pytest.fixture(scope="module")
def cal() -> WorkCalendar:
    return WorkCalendar()


def _published(day: dt.date) -> bool:
    """The transcribed 2026 rule, independent of the library."""
    return day in WORKED_2026 or (day.weekday() < 5 and day not in OFF_2026)


def _shanghai(y: int, m: int, d: int, hh: int = 10, mm: int = 0) -> dt.datetime:
    return dt.datetime(y, m, d, hh, mm, tzinfo=SHANGHAI)


def test_the_package_agrees_with_the_published_2026_schedule() -> None:
    for day in OFF_2026:
        assert chinese_calendar.get_holiday_detail(day)[0] is True, day
        assert not chinese_calendar.is_workday(day), day
    for day in WORKED_2026:
        assert day.weekday() >= 5 and chinese_calendar.is_workday(day), day


def test_every_day_of_2026_follows_the_published_schedule(cal: WorkCalendar) -> None:
    for day in _span(D(2026, 1, 1), D(2026, 12, 31)):
        assert cal.is_workday(day) is _published(day), day


def test_sunday_4_january_2026_is_worked(cal: WorkCalendar) -> None:
    assert cal.is_workday(D(2026, 1, 4)) is True
    assert cal.is_workday(D(2026, 1, 3)) is False  # Saturday inside 元旦


@pytest.mark.parametrize(
    ("received", "n", "due"),
    [
        # a plain Tuesday: Wed, Thu, Fri, Mon, Tue
        (_shanghai(2026, 3, 10), 5, D(2026, 3, 17)),
        # a Friday: the weekend is skipped
        (_shanghai(2026, 3, 13), 5, D(2026, 3, 20)),
        # on a holiday (Saturday 3 Oct, 国庆): 8, 9, Saturday 10 (worked), 12, 13 Oct
        (_shanghai(2026, 10, 3), 5, D(2026, 10, 13)),
        # Spring Festival: 13 Feb, Saturday 14 Feb (worked), 15-23 off, 24, 25, 26 Feb
        (_shanghai(2026, 2, 12), 5, D(2026, 2, 26)),
        # ... then 27 Feb and Saturday 28 Feb (worked)
        (_shanghai(2026, 2, 12), 7, D(2026, 2, 28)),
        # National Day: Sunday 20 Sep is worked and the first day counted
        (_shanghai(2026, 9, 18), 1, D(2026, 9, 20)),
        # 20-24 Sep (5), 25-27 中秋 off, 28-30 Sep (8), 1-7 Oct off, 8, 9 Oct (10)
        (_shanghai(2026, 9, 18), 10, D(2026, 10, 9)),
        # ... and Saturday 10 Oct (worked) is the 11th
        (_shanghai(2026, 9, 18), 11, D(2026, 10, 10)),
        # the year end inside the package's data: 29, 30, 31 Dec
        (_shanghai(2026, 12, 28), 3, D(2026, 12, 31)),
    ],
)
def test_deadline_against_the_2026_schedule(
    cal: WorkCalendar, received: dt.datetime, n: int, due: dt.date
) -> None:
    deadline = cal.deadline(received, n)
    assert deadline.due_date == due
    # the end of the due date in Beijing: the next day 00:00 +08:00, i.e. 16:00 UTC on due
    assert deadline.due_at == dt.datetime(due.year, due.month, due.day, 16, 0, tzinfo=UTC)
    assert deadline.due_at.utcoffset() == dt.timedelta(0)


def test_due_at_is_the_next_day_midnight_in_shanghai(cal: WorkCalendar) -> None:
    deadline = cal.deadline(_shanghai(2026, 2, 12), 5)
    assert deadline == Deadline(D(2026, 2, 26), dt.datetime(2026, 2, 26, 16, 0, tzinfo=UTC))
    assert deadline.due_at.astimezone(SHANGHAI) == dt.datetime(2026, 2, 27, 0, 0, tzinfo=SHANGHAI)
    assert deadline.due_at.tzinfo is UTC


def test_receipt_after_midnight_in_shanghai_counts_from_that_day(cal: WorkCalendar) -> None:
    # 20:00 UTC on Tuesday 10 March is 04:00 on Wednesday 11 March in Beijing: the receipt
    # day is the 11th, so Thu, Fri, Mon, Tue, Wed 18 March.
    received = dt.datetime(2026, 3, 10, 20, 0, tzinfo=UTC)
    assert local_date(received) == D(2026, 3, 11)
    assert cal.deadline(received, 5).due_date == D(2026, 3, 18)
    # the same instant written with another zone's offset changes nothing
    new_york = received.astimezone(dt.timezone(dt.timedelta(hours=-5)))
    assert new_york.date() == D(2026, 3, 10)
    assert cal.deadline(new_york, 5).due_date == D(2026, 3, 18)


def test_receipt_late_on_the_shanghai_evening_counts_from_that_day(cal: WorkCalendar) -> None:
    # 23:59:59 Beijing on Tuesday 10 March is 15:59:59 UTC, still the 10th: due Tue 17 March.
    received = dt.datetime(2026, 3, 10, 15, 59, 59, tzinfo=UTC)
    assert local_date(received) == D(2026, 3, 10)
    assert cal.deadline(received, 5).due_date == D(2026, 3, 17)
    # one second later it is Wednesday in Beijing
    assert cal.deadline(received + dt.timedelta(seconds=1), 5).due_date == D(2026, 3, 18)


def test_a_period_into_a_year_without_data_is_a_calendar_gap(cal: WorkCalendar) -> None:
    with pytest.raises(CalendarGap) as info:
        cal.deadline(_shanghai(2026, 12, 28), 7)
    gap = info.value
    assert gap.year == 2027 and gap.code == "E_CALENDAR"
    assert isinstance(gap, InputError) and gap.exit_code == 3
    assert "2027" in gap.message and "exchange-server calendar import" in gap.message
    assert gap.registry_entry is not None


def test_a_calendar_gap_survives_pickling() -> None:
    gap = pickle.loads(pickle.dumps(CalendarGap(2027)))  # noqa: S301  (our own bytes)
    assert isinstance(gap, CalendarGap) and gap.year == 2027 and gap.code == "E_CALENDAR"
    assert str(gap) == str(CalendarGap(2027))


def test_an_imported_year_completes_the_period() -> None:
    cal = WorkCalendar({2027: FICTIONAL_2027})
    # 29, 30, 31 Dec (3); 1-4 Jan 2027 off (fictional); 5, 6, 7, 8 Jan (7)
    assert cal.deadline(_shanghai(2026, 12, 28), 7).due_date == D(2027, 1, 8)
    # Saturday 9 Jan 2027 is a (fictional) adjusted workday, then Monday 11 Jan
    assert cal.deadline(_shanghai(2026, 12, 28), 8).due_date == D(2027, 1, 9)
    assert cal.deadline(_shanghai(2026, 12, 28), 9).due_date == D(2027, 1, 11)
    assert cal.is_workday(D(2027, 1, 4)) is False  # a listed holiday on a Monday
    assert cal.is_workday(D(2027, 1, 10)) is False  # an unlisted Sunday
    assert cal.is_workday(D(2027, 1, 12)) is True  # an unlisted Tuesday


def test_an_imported_year_takes_precedence_over_the_package() -> None:
    override = YearDays(2026, frozenset({D(2026, 3, 10)}), frozenset({D(2026, 2, 15)}), "TEST")
    cal = WorkCalendar({2026: override})
    assert cal.is_workday(D(2026, 3, 10)) is False  # package: a plain Tuesday
    assert cal.is_workday(D(2026, 2, 15)) is True  # package: 春节
    assert cal.is_workday(D(2026, 2, 16)) is True  # not listed in the override: a Monday
    assert cal.year_days(2026) is override


def test_without_the_package_only_imported_years_are_covered() -> None:
    cal = WorkCalendar({2027: FICTIONAL_2027}, use_package=False)
    assert cal.covers(2027) and not cal.covers(2026)
    assert cal.coverage() == [(2027, FICTIONAL_2027.source)]
    with pytest.raises(CalendarGap) as info:
        cal.is_workday(D(2026, 3, 10))
    assert info.value.year == 2026


def test_years_before_the_package_are_a_gap(cal: WorkCalendar) -> None:
    assert not cal.covers(2003)
    with pytest.raises(CalendarGap):
        cal.is_workday(D(2003, 12, 31))


def test_coverage_names_each_years_source() -> None:
    cal = WorkCalendar({2027: FICTIONAL_2027})
    coverage = cal.coverage()
    assert coverage[0] == (2004, PACKAGE_SOURCE)
    assert (2026, PACKAGE_SOURCE) in coverage
    assert coverage[-1] == (2027, "TEST DATA: fictional 2027 schedule")
    assert [y for y, _ in coverage] == list(range(2004, 2028))
    assert PACKAGE_SOURCE.startswith("chinese-calendar 1.")
    assert cal.covers(2004) and cal.covers(2027) and not cal.covers(2028)


def test_package_year_days_list_the_published_2026_schedule(cal: WorkCalendar) -> None:
    days = cal.year_days(2026)
    assert days.source == PACKAGE_SOURCE
    assert days.workdays == WORKED_2026
    assert days.holidays == OFF_2026
    with pytest.raises(CalendarGap):
        cal.year_days(2027)


def test_working_days_after(cal: WorkCalendar) -> None:
    assert cal.working_days_after(D(2026, 2, 12), D(2026, 2, 28)) == 7
    assert cal.working_days_after(D(2026, 9, 18), D(2026, 10, 10)) == 11
    assert cal.working_days_after(D(2026, 3, 10), D(2026, 3, 10)) == 0
    assert cal.working_days_after(D(2026, 3, 17), D(2026, 3, 10)) == 0
    assert cal.working_days_after(D(2026, 3, 13), D(2026, 3, 15)) == 0  # a weekend
    with pytest.raises(CalendarGap):
        cal.working_days_after(D(2026, 12, 28), D(2027, 1, 8))


@pytest.mark.parametrize("n", [0, -1])
def test_a_period_of_no_working_days_is_refused(cal: WorkCalendar, n: int) -> None:
    with pytest.raises(ValueError, match="at least 1 working day"):
        cal.deadline(_shanghai(2026, 3, 10), n)
    with pytest.raises(ValueError):
        cal.add_working_days(D(2026, 3, 10), n)


def test_a_naive_receipt_time_is_refused(cal: WorkCalendar) -> None:
    with pytest.raises(ValueError, match="naive"):
        cal.deadline(dt.datetime(2026, 3, 10, 10, 0), 5)
    with pytest.raises(ValueError):
        local_date(dt.datetime(2026, 3, 10, 10, 0))


def test_imported_years_must_be_keyed_by_their_year() -> None:
    with pytest.raises(ValueError, match="2028"):
        WorkCalendar({2028: FICTIONAL_2027})


_RECEIPTS = st.datetimes(
    min_value=dt.datetime(2004, 1, 1), max_value=dt.datetime(2026, 11, 1), timezones=st.just(UTC)
)


@settings(max_examples=300, deadline=None)
@given(received=_RECEIPTS, n=st.integers(min_value=1, max_value=25))
def test_deadline_properties(received: dt.datetime, n: int) -> None:
    cal = WorkCalendar()
    shorter, longer = cal.deadline(received, n), cal.deadline(received, n + 1)
    assert longer.due_date > shorter.due_date
    assert longer.due_at > shorter.due_at
    assert cal.is_workday(shorter.due_date)
    assert cal.working_days_after(local_date(received), shorter.due_date) == n
    # no working day is skipped: the day before the due date completes only n - 1
    start = local_date(received)
    assert cal.working_days_after(start, shorter.due_date - dt.timedelta(days=1)) == n - 1
    assert shorter.due_at.astimezone(SHANGHAI).time() == dt.time(0)
    assert shorter.due_at.astimezone(SHANGHAI).date() == shorter.due_date + dt.timedelta(days=1)
