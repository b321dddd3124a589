"""Working days (工作日) and answer deadlines, in Asia/Shanghai.

A period of N working days starts the day after receipt and ends at the end of the N-th working
day (民法典 第二百零一条: the day of receipt is not counted; 浙江 四(一), 95号 二(二), 部省 第十条 give
the periods). Dates and day boundaries are those of Asia/Shanghai, whatever the server's clock
zone, so a bundle received at 23:30 Beijing time (15:30 UTC) counts from the next Beijing day.

Two sources say which days are worked:

- the ``chinese-calendar`` package, which holds the State Council's schedules (国务院办公厅
  关于部分节假日安排的通知) for 2004-2026, adjusted workdays (调休) included;
- years the operator imported from a calendar file (:func:`parse_calendar_file`), for years the
  package does not know yet. An imported year replaces the package's data for that year.

A date in a year neither source covers raises :class:`CalendarGap`: a deadline is never guessed
(fail closed; extrapolated calendars such as the ``holidays`` package's lack 调休 days).

Everything here is pure except :func:`parse_calendar_file`, which reads one file.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import chinese_calendar

from exchange_common.errors import InputError

__all__ = [
    "FIRST_YEAR",
    "LAST_YEAR",
    "MAX_CALENDAR_FILE_BYTES",
    "PACKAGE_SOURCE",
    "SHANGHAI",
    "CalendarGap",
    "Deadline",
    "WorkCalendar",
    "YearDays",
    "local_date",
    "parse_calendar_file",
]

#: The zone of every date and day boundary in deadline arithmetic.
SHANGHAI = ZoneInfo("Asia/Shanghai")

#: Years a calendar file may hold.
FIRST_YEAR = 2004
LAST_YEAR = 2100

#: A calendar file larger than this is refused before it is parsed (a year is about 1 KiB).
MAX_CALENDAR_FILE_BYTES = 1024 * 1024

_ONE_DAY = dt.timedelta(days=1)
_SATURDAY = 5


class CalendarGap(InputError):
    """A date falls in a year for which no source holds working-day data (``E_CALENDAR``).

    ``year`` is the uncovered year. The node refuses to compute the deadline rather than guess.
    """

    code = "E_CALENDAR"

    def __init__(self, year: int) -> None:
        super().__init__(
            f"no working-day data for {year}: import the State Council's holiday schedule for "
            f"{year} with `exchange-server calendar import`"
        )
        self.year = year

    def __reduce__(self) -> tuple[type[CalendarGap], tuple[int]]:
        # Rebuilt from the year, not the message, when it crosses a process boundary.
        return (CalendarGap, (self.year,))


@dataclass(frozen=True)
class YearDays:
    """One year's schedule as the State Council published it.

    Days not listed follow the week: Monday-Friday are worked, Saturday and Sunday are not.
    """

    year: int
    #: Days off (放假); weekend days inside a holiday period may be listed too.
    holidays: frozenset[dt.date]
    #: Adjusted workdays (调休): weekend days that are worked.
    workdays: frozenset[dt.date]
    #: Where the schedule comes from, e.g. "国办发明电〔2025〕7号".
    source: str


@dataclass(frozen=True)
class Deadline:
    """The end of a period of working days."""

    #: The last working day of the period, an Asia/Shanghai date.
    due_date: dt.date
    #: The end of ``due_date`` in Asia/Shanghai (the next day 00:00 +08:00), as aware UTC.
    due_at: dt.datetime


def local_date(instant: dt.datetime) -> dt.date:
    """The Asia/Shanghai date of the aware ``instant``.

    Raises :class:`ValueError` for a naive datetime: its zone would be a guess.
    """
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError("a naive datetime has no zone: give an aware instant (e.g. UTC)")
    return instant.astimezone(SHANGHAI).date()


def _package_version() -> str:
    try:
        return importlib.metadata.version("chinese-calendar")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - vendored copies
        return str(getattr(chinese_calendar, "__version__", "unknown"))


#: What ``coverage`` names as the source of the package's years.
PACKAGE_SOURCE = f"chinese-calendar {_package_version()}"

# The package refuses dates outside [min year, max year] of its holiday table (its own rule).
_PACKAGE_HOLIDAYS: Mapping[dt.date, str] = chinese_calendar.holidays
_PACKAGE_WORKDAYS: Mapping[dt.date, str] = chinese_calendar.workdays
_PACKAGE_YEARS = range(
    min(d.year for d in _PACKAGE_HOLIDAYS), max(d.year for d in _PACKAGE_HOLIDAYS) + 1
)


class WorkCalendar:
    """Which days are worked, from the package and imported years; deadline arithmetic on them.

    An imported year takes precedence over the package for that year. Every method that looks
    at a day raises :class:`CalendarGap` when the day's year is covered by neither source.
    """

    def __init__(
        self, imported: Mapping[int, YearDays] | None = None, *, use_package: bool = True
    ) -> None:
        """``imported`` maps each year to its schedule (``ValueError`` if a key is not its
        value's year); ``use_package=False`` ignores the package (tests, strict setups)."""
        self._imported = dict(imported or {})
        for year, days in self._imported.items():
            if days.year != year:
                raise ValueError(f"imported calendar keyed {year} holds year {days.year}")
        self._use_package = use_package

    def covers(self, year: int) -> bool:
        """Whether working-day data exists for ``year`` (imported or in the package)."""
        return year in self._imported or (self._use_package and year in _PACKAGE_YEARS)

    def coverage(self) -> list[tuple[int, str]]:
        """``(year, source)`` for every covered year, sorted by year.

        An imported year gives its file's ``source``; a package year gives
        ``"chinese-calendar <version>"``.
        """
        years = dict.fromkeys(_PACKAGE_YEARS, PACKAGE_SOURCE) if self._use_package else {}
        years.update({y: d.source for y, d in self._imported.items()})
        return sorted(years.items())

    def year_days(self, year: int) -> YearDays:
        """The schedule of ``year``: the imported one, else the package's (its listed holidays
        and adjusted workdays). Raises :class:`CalendarGap` for an uncovered year."""
        if year in self._imported:
            return self._imported[year]
        if not self.covers(year):
            raise CalendarGap(year)
        return YearDays(
            year=year,
            holidays=frozenset(d for d in _PACKAGE_HOLIDAYS if d.year == year),
            workdays=frozenset(d for d in _PACKAGE_WORKDAYS if d.year == year),
            source=PACKAGE_SOURCE,
        )

    def is_workday(self, day: dt.date) -> bool:
        """Whether ``day`` is a working day; adjusted weekend workdays (调休) are.

        Raises :class:`CalendarGap` when ``day``'s year is not covered.
        """
        days = self._imported.get(day.year)
        if days is not None:
            if day in days.holidays:
                return False
            return day in days.workdays or day.weekday() < _SATURDAY
        if not self._use_package:
            raise CalendarGap(day.year)
        try:
            return bool(chinese_calendar.is_workday(day))
        except NotImplementedError as e:  # the package's "no data for this year"
            raise CalendarGap(day.year) from e

    def add_working_days(self, start: dt.date, n: int) -> dt.date:
        """The ``n``-th working day strictly after ``start``.

        Raises :class:`ValueError` when ``n < 1`` and :class:`CalendarGap` when a day on the
        way lies in an uncovered year.
        """
        if isinstance(n, bool) or n < 1:
            raise ValueError(f"a period needs at least 1 working day, not {n!r}")
        day, left = start, n
        while left:
            day += _ONE_DAY
            if self.is_workday(day):
                left -= 1
        return day

    def deadline(self, received_at: dt.datetime, n: int) -> Deadline:
        """The deadline of a period of ``n`` working days starting with a receipt at
        ``received_at`` (aware).

        民法典 第二百零一条: the day of receipt (its Asia/Shanghai date) is not counted; the
        period ends at the end of the ``n``-th working day after it, i.e. at 00:00 +08:00 of
        the following day. Raises :class:`ValueError` for a naive ``received_at`` or ``n < 1``,
        :class:`CalendarGap` when the period reaches an uncovered year.
        """
        return self.period_end(local_date(received_at), n)

    def period_end(self, start: dt.date, n: int) -> Deadline:
        """The deadline of ``n`` working days counted from the day after ``start``.

        Raises :class:`ValueError` when ``n < 1``, :class:`CalendarGap` for an uncovered year.
        """
        return self.ending(self.add_working_days(start, n))

    @staticmethod
    def ending(day: dt.date) -> Deadline:
        """The deadline that ends with ``day``: at 00:00 +08:00 of the following day (UTC)."""
        end = dt.datetime.combine(day + _ONE_DAY, dt.time(0), tzinfo=SHANGHAI)
        return Deadline(due_date=day, due_at=end.astimezone(dt.UTC))

    def working_days_after(self, start: dt.date, end: dt.date) -> int:
        """The number of working days ``d`` with ``start < d <= end`` (0 if ``end <= start``).

        Raises :class:`CalendarGap` when a day in that range lies in an uncovered year.
        """
        count, day = 0, start
        while day < end:
            day += _ONE_DAY
            count += self.is_workday(day)
        return count


# --------------------------------------------------------------------------- calendar files

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_KEYS = frozenset({"year", "source", "holidays", "workdays"})
_MAX_SOURCE = 200
#: Fixed-date statutory holidays (全国年节及纪念日放假办法, as amended 2024, in force 2025).
_FIXED = (
    ((1, 1), "New Year's Day (元旦)"),
    ((5, 1), "Labour Day (劳动节)"),
    ((5, 2), "Labour Day (劳动节)"),
    ((10, 1), "National Day (国庆节)"),
    ((10, 2), "National Day (国庆节)"),
    ((10, 3), "National Day (国庆节)"),
)
#: Statutory holidays per year since 2025; a complete schedule lists at least this many.
MIN_HOLIDAYS = 13
#: The Spring Festival (春节) holidays: at least this many, in one period of days off whose
#: first holiday falls between these dates (month, day).
SPRING_FESTIVAL_DAYS = 4
SPRING_FESTIVAL_WINDOW = ((1, 20), (2, 20))


class _FileProblem(Exception):
    """One thing wrong with a calendar file (turned into ``E_CALENDAR_FILE`` naming the file)."""


def parse_calendar_file(path: Path) -> dict[int, YearDays]:
    """Read and validate a calendar file (TOML, UTF-8; docs/working-days.md); year -> schedule.

    A file is taken whole or not at all, and each year is complete or refused: an unknown key,
    a year outside 2004-2100 or given twice, a date that is not ``YYYY-MM-DD`` or not in its
    year, a date listed twice, a day both holiday and workday, an adjusted workday that is not
    a Saturday or Sunday, a missing or empty ``source``, or a missing statutory holiday all
    refuse the file. Raises :class:`InputError` ``E_CALENDAR_FILE`` naming the file, the year
    and the problem (also for a missing, oversized, non-UTF-8 or malformed file).
    """
    try:
        return _parse(path)
    except _FileProblem as e:
        raise InputError(f"calendar file {path}: {e}", code="E_CALENDAR_FILE") from None


def _parse(path: Path) -> dict[int, YearDays]:
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_CALENDAR_FILE_BYTES + 1)
    except OSError as e:
        raise _FileProblem(f"cannot be read ({e.strerror or e})") from e
    if len(raw) > MAX_CALENDAR_FILE_BYTES:
        raise _FileProblem(f"larger than {MAX_CALENDAR_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise _FileProblem(
            f"is not UTF-8 (invalid byte at offset {e.start}; GB18030/GBK files must be saved "
            "as UTF-8)"
        ) from e
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise _FileProblem(f"is not valid TOML: {e}") from e
    unknown = sorted(set(data) - {"year"})
    if unknown:
        raise _FileProblem(f"unknown key(s) {', '.join(unknown)} (only [[year]] tables)")
    entries = data.get("year")
    if not isinstance(entries, list) or not entries:
        raise _FileProblem("holds no [[year]] table")
    out: dict[int, YearDays] = {}
    for index, entry in enumerate(entries, 1):
        days = _year(entry, index)
        if days.year in out:
            raise _FileProblem(f"year {days.year} is given twice")
        out[days.year] = days
    return out


def _year(entry: Any, index: int) -> YearDays:
    if not isinstance(entry, dict):
        raise _FileProblem(f"[[year]] number {index} is not a table")
    year = entry.get("year")
    if isinstance(year, bool) or not isinstance(year, int):
        raise _FileProblem(f"[[year]] number {index}: `year` must be an integer, e.g. 2027")
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise _FileProblem(f"year {year} is outside {FIRST_YEAR}-{LAST_YEAR}")
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise _FileProblem(f"year {year}: unknown key(s) {', '.join(unknown)}")
    source = entry.get("source")
    if not isinstance(source, str) or not source.strip():
        raise _FileProblem(
            f"year {year}: `source` is missing or empty (name the notice, e.g. 国办发明电〔2025〕7号)"
        )
    if len(source) > _MAX_SOURCE or any(not c.isprintable() for c in source):
        raise _FileProblem(f"year {year}: `source` must be one line of at most {_MAX_SOURCE} chars")
    holidays = _dates(entry.get("holidays"), year, "holidays")
    workdays = _dates(entry.get("workdays", []), year, "workdays")
    both = sorted(set(holidays) & set(workdays))
    if both:
        raise _FileProblem(f"year {year}: {both[0]} is listed both as holiday and as workday")
    for day in workdays:
        if day.weekday() < _SATURDAY:
            raise _FileProblem(
                f"year {year}: adjusted workday {day} is a {day:%A}, not a Saturday or Sunday"
            )
    days = YearDays(year, frozenset(holidays), frozenset(workdays), source.strip())
    _check_complete(days)
    return days


def _dates(value: Any, year: int, key: str) -> list[dt.date]:
    if value is None:
        raise _FileProblem(f"year {year}: `{key}` is missing")
    if not isinstance(value, list):
        raise _FileProblem(f"year {year}: `{key}` must be a list of dates")
    out: list[dt.date] = []
    seen: set[dt.date] = set()
    for item in value:
        day = _date(item, year, key)
        if day in seen:
            raise _FileProblem(f"year {year}: {day} is listed twice in `{key}`")
        seen.add(day)
        out.append(day)
    return out


def _date(item: Any, year: int, key: str) -> dt.date:
    # TOML's own local dates (unquoted 2027-01-01) are ISO dates too; datetimes are not dates.
    if isinstance(item, dt.date) and not isinstance(item, dt.datetime):
        day = item
    elif isinstance(item, str) and _DATE.fullmatch(item):
        try:
            day = dt.date.fromisoformat(item)
        except ValueError:
            raise _FileProblem(f"year {year}: `{key}` has {item!r}, not a real date") from None
    else:
        raise _FileProblem(f"year {year}: `{key}` has {item!r}, not a date as YYYY-MM-DD")
    if day.year != year:
        raise _FileProblem(f"year {year}: `{key}` has {day}, which is not in {year}")
    return day


def _check_complete(days: YearDays) -> None:
    """A year is complete or refused: the fixed-date statutory holidays, a Spring Festival
    period, and at least :data:`MIN_HOLIDAYS` holidays (全体公民放假的节日, in force 2025)."""
    year = days.year
    for (month, day), name in _FIXED:
        date = dt.date(year, month, day)
        if date not in days.holidays:
            raise _FileProblem(f"year {year}: {date} ({name}) is not listed as a holiday")
    if not _has_spring_festival(days):
        (m1, d1), (m2, d2) = SPRING_FESTIVAL_WINDOW
        raise _FileProblem(
            f"year {year}: no Spring Festival (春节) period: at least {SPRING_FESTIVAL_DAYS} "
            f"holidays in a row (weekends between them count as days off), the first between "
            f"{dt.date(year, m1, d1)} and {dt.date(year, m2, d2)}"
        )
    if len(days.holidays) < MIN_HOLIDAYS:
        raise _FileProblem(
            f"year {year}: only {len(days.holidays)} holidays listed, a complete schedule has at "
            f"least {MIN_HOLIDAYS} (every day of each 放假 period)"
        )


def _has_spring_festival(days: YearDays) -> bool:
    (m1, d1), (m2, d2) = SPRING_FESTIVAL_WINDOW
    first, last = dt.date(days.year, m1, d1), dt.date(days.year, m2, d2)
    for run in _rest_runs(days):
        listed = [d for d in run if d in days.holidays]
        if len(listed) >= SPRING_FESTIVAL_DAYS and first <= listed[0] <= last:
            return True
    return False


def _rest_runs(days: YearDays) -> Iterable[list[dt.date]]:
    """Maximal runs of consecutive days off around the listed holidays: listed holidays, and
    weekend days that are not adjusted workdays (a file need not list those)."""

    def off(d: dt.date) -> bool:
        return d in days.holidays or (d.weekday() >= _SATURDAY and d not in days.workdays)

    run: list[dt.date] = []
    day = dt.date(days.year, 1, 1)
    while day.year == days.year:
        if off(day):
            run.append(day)
        else:
            if any(d in days.holidays for d in run):
                yield run
            run = []
        day += _ONE_DAY
    if any(d in days.holidays for d in run):
        yield run
