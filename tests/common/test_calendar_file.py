"""Calendar files: a good file round-trips; each validation rule refuses the whole file with a
message naming the file, the year and the problem (``E_CALENDAR_FILE``).

Files are generated here (tests/common/calendargen.py); the 2027 year is FICTIONAL TEST DATA.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from exchange_common.errors import InputError
from exchange_common.workdays import (
    MAX_CALENDAR_FILE_BYTES,
    WorkCalendar,
    YearDays,
    parse_calendar_file,
)
from tests.common.calendargen import FICTIONAL_2027, entry, render, write_calendar


def _refused(path: Path) -> str:
    with pytest.raises(InputError) as info:
        parse_calendar_file(path)
    error = info.value
    assert error.code == "E_CALENDAR_FILE" and error.exit_code == 3
    assert str(path) in error.message
    return error.message


def _with(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> str:
    table = entry(FICTIONAL_2027)
    change(table)
    return _refused(write_calendar(tmp_path / "cal.toml", [table]))


def test_a_good_file_round_trips(tmp_path: Path) -> None:
    second = YearDays(
        2028,
        frozenset(d.replace(year=2028) for d in FICTIONAL_2027.holidays),
        frozenset({dt.date(2028, 1, 8)}),  # a Saturday
        "TEST DATA: fictional 2028 schedule",
    )
    path = write_calendar(tmp_path / "cal.toml", [entry(FICTIONAL_2027), entry(second)])
    years = parse_calendar_file(path)
    assert years == {2027: FICTIONAL_2027, 2028: second}
    assert WorkCalendar(years).is_workday(dt.date(2027, 1, 9)) is True


def test_toml_dates_and_a_byte_order_mark_are_accepted(tmp_path: Path) -> None:
    table = entry(FICTIONAL_2027)
    table["holidays"] = sorted(FICTIONAL_2027.holidays)  # unquoted TOML local dates
    path = tmp_path / "cal.toml"
    path.write_bytes(b"\xef\xbb\xbf" + render([table]).encode())  # as Windows Notepad saves
    assert parse_calendar_file(path) == {2027: FICTIONAL_2027}


@pytest.mark.parametrize("year", [2025, 2026])
def test_the_packages_own_schedules_pass_the_rules(tmp_path: Path, year: int) -> None:
    """The completeness rules (in force 2025) accept the State Council's real schedules."""
    days = WorkCalendar().year_days(year)
    path = write_calendar(tmp_path / "cal.toml", [entry(days)])
    assert parse_calendar_file(path)[year].holidays == days.holidays


def test_unknown_key_in_a_year(tmp_path: Path) -> None:
    message = _with(tmp_path, lambda t: t.update(holiday=["2027-01-01"]))
    assert "year 2027" in message and "unknown key(s) holiday" in message


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path = tmp_path / "cal.toml"
    path.write_text(render([entry(FICTIONAL_2027)], extra='country = "CN"'), encoding="utf-8")
    assert "unknown key(s) country" in _refused(path)


@pytest.mark.parametrize("year", [2003, 2101])
def test_year_outside_the_range(tmp_path: Path, year: int) -> None:
    message = _with(tmp_path, lambda t: t.update(year=year))
    assert f"year {year} is outside 2004-2100" in message


@pytest.mark.parametrize("year", ["2027", 2027.0, True])
def test_year_that_is_not_an_integer(tmp_path: Path, year: object) -> None:
    assert "`year` must be an integer" in _with(tmp_path, lambda t: t.update(year=year))


def test_the_same_year_twice(tmp_path: Path) -> None:
    path = write_calendar(tmp_path / "cal.toml", [entry(FICTIONAL_2027)] * 2)
    assert "year 2027 is given twice" in _refused(path)


@pytest.mark.parametrize("bad", ["2027/01/05", "2027-1-5", "05.01.2027", "", 20270105])
def test_date_not_iso(tmp_path: Path, bad: object) -> None:
    message = _with(tmp_path, lambda t: t["holidays"].append(bad))
    assert "year 2027" in message and "not a date as YYYY-MM-DD" in message
    assert repr(bad) in message


def test_date_that_does_not_exist(tmp_path: Path) -> None:
    message = _with(tmp_path, lambda t: t["holidays"].append("2027-02-29"))
    assert "'2027-02-29', not a real date" in message


def test_date_outside_its_year(tmp_path: Path) -> None:
    message = _with(tmp_path, lambda t: t["workdays"].append("2028-01-08"))
    assert "year 2027" in message and "2028-01-08, which is not in 2027" in message


def test_date_listed_twice(tmp_path: Path) -> None:
    message = _with(tmp_path, lambda t: t["holidays"].append("2027-04-05"))
    assert "year 2027: 2027-04-05 is listed twice in `holidays`" in message


def test_day_both_holiday_and_workday(tmp_path: Path) -> None:
    message = _with(tmp_path, lambda t: t["workdays"].append("2027-01-02"))
    assert "2027-01-02 is listed both as holiday and as workday" in message


def test_adjusted_workday_on_a_weekday(tmp_path: Path) -> None:
    message = _with(tmp_path, lambda t: t["workdays"].append("2027-01-12"))
    assert "adjusted workday 2027-01-12 is a Tuesday, not a Saturday or Sunday" in message


@pytest.mark.parametrize("source", [None, "", "   "])
def test_missing_or_empty_source(tmp_path: Path, source: str | None) -> None:
    def change(t: dict[str, Any]) -> None:
        if source is None:
            del t["source"]
        else:
            t["source"] = source

    assert "year 2027: `source` is missing or empty" in _with(tmp_path, change)


def test_source_of_several_lines(tmp_path: Path) -> None:
    assert "`source` must be one line" in _with(tmp_path, lambda t: t.update(source="a\nb"))


def test_missing_holidays_list(tmp_path: Path) -> None:
    assert "year 2027: `holidays` is missing" in _with(tmp_path, lambda t: t.pop("holidays"))


def test_missing_workdays_list_means_none(tmp_path: Path) -> None:
    table = entry(FICTIONAL_2027)
    del table["workdays"]
    years = parse_calendar_file(write_calendar(tmp_path / "cal.toml", [table]))
    assert years[2027].workdays == frozenset()


@pytest.mark.parametrize(
    ("day", "name"),
    [
        ("2027-01-01", "New Year's Day"),
        ("2027-05-01", "Labour Day"),
        ("2027-05-02", "Labour Day"),
        ("2027-10-01", "National Day"),
        ("2027-10-02", "National Day"),
        ("2027-10-03", "National Day"),
    ],
)
def test_missing_fixed_date_statutory_holiday(tmp_path: Path, day: str, name: str) -> None:
    message = _with(tmp_path, lambda t: t["holidays"].remove(day))
    assert f"year 2027: {day} ({name}" in message and "is not listed as a holiday" in message


def test_missing_spring_festival(tmp_path: Path) -> None:
    def change(t: dict[str, Any]) -> None:
        t["holidays"] = [d for d in t["holidays"] if not d.startswith("2027-02")]
        t["holidays"] += ["2027-08-02", "2027-08-03", "2027-08-04", "2027-08-05"]  # not 春节

    message = _with(tmp_path, change)
    assert "year 2027: no Spring Festival (春节) period" in message
    assert "2027-01-20 and 2027-02-20" in message


def test_spring_festival_too_short(tmp_path: Path) -> None:
    def change(t: dict[str, Any]) -> None:
        # 5 Feb (Fri) and 8 Feb (Mon), the weekend between: only 2 holidays in the period
        t["holidays"] = [d for d in t["holidays"] if not d.startswith("2027-02")]
        t["holidays"] += ["2027-02-05", "2027-02-08", "2027-11-01", "2027-11-02"]

    assert "no Spring Festival (春节) period" in _with(tmp_path, change)


def test_spring_festival_with_its_weekend_left_unlisted(tmp_path: Path) -> None:
    """Weekend days inside a holiday period may be left out: Fri 5, Mon 8 - Thu 11 Feb."""
    table = entry(FICTIONAL_2027)
    table["holidays"].remove("2027-02-06")
    table["holidays"].remove("2027-02-07")
    years = parse_calendar_file(write_calendar(tmp_path / "cal.toml", [table]))
    assert dt.date(2027, 2, 6) not in years[2027].holidays


def test_too_few_holidays(tmp_path: Path) -> None:
    def change(t: dict[str, Any]) -> None:
        t["holidays"] = [
            "2027-01-01", "2027-02-08", "2027-02-09", "2027-02-10", "2027-02-11",
            "2027-05-01", "2027-05-02", "2027-10-01", "2027-10-02", "2027-10-03",
        ]  # fmt: skip

    message = _with(tmp_path, change)
    assert "year 2027: only 10 holidays listed" in message and "at least 13" in message


def test_no_year_table(tmp_path: Path) -> None:
    path = tmp_path / "cal.toml"
    path.write_text("# nothing\n", encoding="utf-8")
    assert "holds no [[year]] table" in _refused(path)


def test_year_that_is_not_a_table(tmp_path: Path) -> None:
    path = tmp_path / "cal.toml"
    path.write_text("year = [2027]\n", encoding="utf-8")
    assert "[[year]] number 1 is not a table" in _refused(path)


def test_bad_toml(tmp_path: Path) -> None:
    path = tmp_path / "cal.toml"
    path.write_text('[[year]]\nyear = 2027\nsource = "unterminated\n', encoding="utf-8")
    assert "is not valid TOML" in _refused(path)


def test_gb18030_file_is_refused_with_the_encoding_named(tmp_path: Path) -> None:
    path = tmp_path / "cal.toml"
    table = entry(FICTIONAL_2027) | {"source": "国办发明电〔2026〕1号（测试数据）"}
    path.write_bytes(render([table]).encode("gb18030"))
    message = _refused(path)
    assert "is not UTF-8" in message and "GB18030" in message


def test_invalid_utf8_bytes(tmp_path: Path) -> None:
    path = tmp_path / "cal.toml"
    path.write_bytes(render([entry(FICTIONAL_2027)]).encode() + b"\n# \xff\xfe\n")
    assert "is not UTF-8 (invalid byte at offset" in _refused(path)


def test_oversized_file(tmp_path: Path) -> None:
    path = tmp_path / "cal.toml"
    path.write_bytes(b"#" * (MAX_CALENDAR_FILE_BYTES + 1))
    assert f"larger than {MAX_CALENDAR_FILE_BYTES} bytes" in _refused(path)


def test_missing_file(tmp_path: Path) -> None:
    assert "cannot be read" in _refused(tmp_path / "absent.toml")


def test_one_bad_year_refuses_the_whole_file(tmp_path: Path) -> None:
    bad = entry(FICTIONAL_2027) | {"year": 2028, "source": "TEST DATA"}  # 2027 dates in 2028
    path = write_calendar(tmp_path / "cal.toml", [entry(FICTIONAL_2027), bad])
    assert "year 2028" in _refused(path)


def test_the_example_in_the_docs_is_the_2026_schedule(tmp_path: Path) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "working-days.md").read_text("utf-8")
    example = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "example.toml"
    path.write_text(example, encoding="utf-8")
    published = WorkCalendar().year_days(2026)
    assert parse_calendar_file(path) == {
        2026: YearDays(2026, published.holidays, published.workdays, "国办发明电〔2025〕7号")
    }
