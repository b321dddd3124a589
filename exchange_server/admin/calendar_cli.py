"""``exchange-server calendar``: the working-day calendar (工作日) that deadlines are counted in.

A thin adapter over :mod:`exchange_common.workdays` (the rules and the file format) and
:mod:`exchange_server.store.calendar` (imported years in the state store, audited).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any

import typer

from exchange_common.cli import console, emit_json, err_console, fail_on_error
from exchange_common.workdays import PACKAGE_SOURCE, WorkCalendar, YearDays, local_date
from exchange_server.admin.cli_shared import HomeOpt, JsonOpt, _node, command_group
from exchange_server.node import utcnow

__all__ = ["calendar_app"]

calendar_app = command_group(
    "calendar",
    "The working-day calendar (工作日) deadlines are counted in: import the State "
    "Council's holiday schedule for a year, show a year, list the covered years.",
)

_ONE_DAY = dt.timedelta(days=1)


def _working_days(cal: WorkCalendar, year: int) -> int:
    return cal.working_days_after(dt.date(year - 1, 12, 31), dt.date(year, 12, 31))


def _runs(days: frozenset[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """Consecutive dates grouped into (first, last) periods."""
    out: list[tuple[dt.date, dt.date]] = []
    for day in sorted(days):
        if out and out[-1][1] + _ONE_DAY == day:
            out[-1] = (out[-1][0], day)
        else:
            out.append((day, day))
    return out


def _summary(days: YearDays, cal: WorkCalendar) -> dict[str, Any]:
    return {
        "year": days.year,
        "source": days.source,
        "holidays": len(days.holidays),
        "workdays": len(days.workdays),
        "working_days": _working_days(cal, days.year),
    }


@calendar_app.command("import")
@fail_on_error
def calendar_import(
    file: Annotated[Path, typer.Argument(help="Calendar file (TOML, docs/working-days.md).")],
    home: HomeOpt,
    json_out: JsonOpt = False,
) -> None:
    """Validate a calendar file and store its years, replacing years imported before.

    The whole file is refused when any year is invalid or incomplete (`E_CALENDAR_FILE`, the
    year and date named); nothing is stored then. An imported year takes precedence over the
    `chinese-calendar` package for that year. Each year imported is an audit event
    `calendar.imported`.

    **Examples**

        exchange-server calendar import --home /srv/node calendar-2027.toml

        exchange-server calendar import --home /srv/node calendar-2027.toml --json
    """
    from exchange_common.workdays import parse_calendar_file
    from exchange_server.store.calendar import import_years, imported_years, load_calendar

    years = parse_calendar_file(file)
    package = WorkCalendar()
    node = _node(home)
    with node.session() as s:
        import_years(s, years, actor="operator", now=utcnow())
        digests = {row.year: row.sha256 for row in imported_years(s)}
        cal = load_calendar(s)
    out = [
        _summary(years[y], cal) | {"sha256": digests[y], "replaces_package": package.covers(y)}
        for y in sorted(years)
    ]
    if json_out:
        emit_json({"file": str(file), "imported": out})
        return
    for item in out:
        console.print(
            f"imported {item['year']}: {item['holidays']} holidays, {item['workdays']} adjusted "
            f"workdays, {item['working_days']} working days  ({item['source']})",
            markup=False,
        )
        if item["replaces_package"]:
            console.print(
                f"  note: {item['year']} replaces the {PACKAGE_SOURCE} data for that year",
                markup=False,
            )


@calendar_app.command("show")
@fail_on_error
def calendar_show(
    year: Annotated[int, typer.Argument(help="The year, e.g. 2027.")],
    home: HomeOpt,
    json_out: JsonOpt = False,
) -> None:
    """Show one year: where its data comes from, its holidays and adjusted workdays (调休), and
    its number of working days.

    A year with no data (neither in the package nor imported) is an error `E_CALENDAR`.

    **Examples**

        exchange-server calendar show --home /srv/node 2026

        exchange-server calendar show --home /srv/node 2027 --json
    """
    from exchange_server.store.calendar import imported_years, load_calendar

    node = _node(home)
    with node.session(write=False) as s:
        rows = {row.year: row for row in imported_years(s)}
        cal = load_calendar(s)
    days = cal.year_days(year)  # CalendarGap (E_CALENDAR) for a year without data
    row = rows.get(year)
    info: dict[str, Any] = {
        "year": year,
        "kind": "imported" if row is not None else "package",
        "source": days.source,
        "working_days": _working_days(cal, year),
        "holidays": sorted(d.isoformat() for d in days.holidays),
        "workdays": sorted(d.isoformat() for d in days.workdays),
    }
    if row is not None:
        info |= {
            "imported_at": row.imported_at.astimezone(dt.UTC).isoformat(),
            "imported_by": row.imported_by,
            "sha256": row.sha256,
        }
    if json_out:
        emit_json(info)
        return
    console.print(f"{year}  {info['kind']}  {days.source}", markup=False)
    if row is not None:
        console.print(
            f"  imported {info['imported_at']} by {row.imported_by}, sha256 {row.sha256[:16]}",
            markup=False,
        )
    console.print(f"  {'working days':<18} {info['working_days']}", markup=False)
    console.print(f"  {'holidays':<18} {len(days.holidays)} (放假)", markup=False)
    for first, last in _runs(days.holidays):
        span = f"{first} {first:%a}" if first == last else f"{first} {first:%a} - {last} {last:%a}"
        count = (last - first).days + 1
        console.print(f"    {span}  ({count} day{'s' if count > 1 else ''})", markup=False)
    console.print(f"  {'adjusted workdays':<18} {len(days.workdays)} (调休上班)", markup=False)
    for day in sorted(days.workdays):
        console.print(f"    {day} {day:%a}", markup=False)


@calendar_app.command("coverage")
@fail_on_error
def calendar_coverage(home: HomeOpt, json_out: JsonOpt = False) -> None:
    """List the years with working-day data and where each comes from.

    Deadlines that reach a year not listed fail with `E_CALENDAR` until its schedule is
    imported; the State Council publishes next year's schedule around November.

    **Examples**

        exchange-server calendar coverage --home /srv/node

        exchange-server calendar coverage --home /srv/node --json
    """
    from exchange_server.store.calendar import imported_years, load_calendar

    node = _node(home)
    with node.session(write=False) as s:
        imported = {row.year for row in imported_years(s)}
        cal = load_calendar(s)
    years = [
        {"year": y, "kind": "imported" if y in imported else "package", "source": source}
        for y, source in cal.coverage()
    ]
    if json_out:
        emit_json(years)
        return
    groups: list[list[dict[str, Any]]] = []
    for item in years:
        last = groups[-1][-1] if groups else None
        if last and (last["year"] + 1, last["kind"], last["source"]) == (
            item["year"],
            item["kind"],
            item["source"],
        ):
            groups[-1].append(item)
        else:
            groups.append([item])
    for group in groups:
        first, last = group[0]["year"], group[-1]["year"]
        span = str(first) if first == last else f"{first}-{last}"
        console.print(f"{span:<10} {group[0]['kind']:<9} {group[0]['source']}", markup=False)
    next_year = local_date(utcnow()).year + 1
    if not cal.covers(next_year):
        err_console.print(
            f"note: {next_year} is not covered: import its schedule when the State Council "
            "publishes it (`exchange-server calendar import`)",
            markup=False,
        )
