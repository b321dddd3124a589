"""``exchange-server calendar``: import, show and coverage through the real Typer app, on a
node home whose store is SQLite or PostgreSQL.

The calendar commands need only ``node.toml`` and the store, so the home here is just that.
The 2027 year is FICTIONAL TEST DATA (tests/common/calendargen.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner, Result

from exchange_server.admin.cli import app
from exchange_server.node import Node
from exchange_server.store.audit import verify_chain
from exchange_server.store.calendar import imported_years
from exchange_server.store.models import AuditEvent
from tests.common.calendargen import FICTIONAL_2027, entry, write_calendar

#: 2026 adjusted workdays (国办发明电〔2025〕7号), written out by hand.
WORKED_2026 = ["2026-01-04", "2026-02-14", "2026-02-28", "2026-05-09", "2026-09-20", "2026-10-10"]


@pytest.fixture
def home(tmp_path: Path, store_url: str) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    (home / "node.toml").write_text(
        f'[node]\ncode = "NODE01"\nname = "测试节点"\ndatabase = "{store_url}"\n', encoding="utf-8"
    )
    return home


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(app, ["calendar", *[str(a) for a in args]])


def assert_error(result: Result, exit_code: int, code: str) -> str:
    assert result.exit_code == exit_code, (result.output, result.exception)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert errors[0].endswith(f"({code})"), errors[0]
    assert "Traceback" not in result.stderr
    return errors[0]


def _stored(home: Path) -> tuple[list[int], list[AuditEvent]]:
    node = Node.open(home)
    try:
        with Session(node.engine) as s:
            years = [row.year for row in imported_years(s)]
            events = list(
                s.exec(select(AuditEvent).where(AuditEvent.action == "calendar.imported"))
            )
            verify_chain(s)
        return years, events
    finally:
        node.engine.dispose()


def test_import_a_good_file(home: Path, tmp_path: Path) -> None:
    path = write_calendar(tmp_path / "calendar-2027.toml")
    r = invoke("import", "--home", home, path, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["file"] == str(path)
    (item,) = out["imported"]
    # 2027 (fictional): 261 weekdays - 18 listed weekday holidays + 3 Saturday workdays
    assert item == {
        "year": 2027,
        "source": FICTIONAL_2027.source,
        "holidays": 26,
        "workdays": 3,
        "working_days": 246,
        "sha256": item["sha256"],
        "replaces_package": False,
    }
    assert len(item["sha256"]) == 64
    years, events = _stored(home)
    assert years == [2027]
    assert [(e.actor, e.subject) for e in events] == [("operator", "2027")]
    assert json.loads(events[0].detail)["sha256"] == item["sha256"]


def test_import_prints_each_year(home: Path, tmp_path: Path) -> None:
    r = invoke("import", "--home", home, write_calendar(tmp_path / "c.toml"))
    assert r.exit_code == 0, r.output
    assert "imported 2027: 26 holidays, 3 adjusted workdays, 246 working days" in r.stdout
    assert FICTIONAL_2027.source in r.stdout


def test_import_over_a_package_year_says_so(home: Path, tmp_path: Path) -> None:
    from exchange_common.workdays import WorkCalendar

    path = write_calendar(tmp_path / "c.toml", [entry(WorkCalendar().year_days(2026))])
    r = invoke("import", "--home", home, path)
    assert r.exit_code == 0, r.output
    assert "2026 replaces the chinese-calendar" in r.stdout


def test_a_bad_file_is_refused_and_nothing_is_stored(home: Path, tmp_path: Path) -> None:
    good = entry(FICTIONAL_2027)
    bad = entry(FICTIONAL_2027) | {"year": 2028, "source": "TEST DATA: fictional 2028"}
    bad["workdays"] = ["2028-01-11"]  # a Tuesday
    bad["holidays"] = [d.replace("2027", "2028") for d in bad["holidays"]]
    path = write_calendar(tmp_path / "bad.toml", [good, bad])
    r = invoke("import", "--home", home, path)
    error = assert_error(r, 3, "E_CALENDAR_FILE")
    assert str(path) in error and "year 2028" in error and "2028-01-11 is a Tuesday" in error
    assert "hint:" in r.stderr
    assert _stored(home) == ([], [])  # the good 2027 in the same file was not stored either


def test_show_a_package_year(home: Path) -> None:
    r = invoke("show", "--home", home, "2026", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert (out["year"], out["kind"]) == (2026, "package")
    assert out["source"].startswith("chinese-calendar ")
    assert out["workdays"] == WORKED_2026
    assert "2026-02-15" in out["holidays"] and "2026-02-23" in out["holidays"]
    # 261 weekdays - 19 weekday holidays + 6 adjusted workdays, counted by hand
    assert out["working_days"] == 248
    text = invoke("show", "--home", home, "2026")
    assert text.exit_code == 0, text.output
    assert "2026-02-15 Sun - 2026-02-23 Mon  (9 days)" in text.stdout
    assert "2026-01-04 Sun" in text.stdout


def test_show_a_year_without_data_then_after_its_import(home: Path, tmp_path: Path) -> None:
    error = assert_error(invoke("show", "--home", home, "2027"), 3, "E_CALENDAR")
    assert "no working-day data for 2027" in error and "calendar import" in error
    assert invoke("import", "--home", home, write_calendar(tmp_path / "c.toml")).exit_code == 0
    r = invoke("show", "--home", home, "2027", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert (out["kind"], out["source"], out["working_days"]) == (
        "imported",
        FICTIONAL_2027.source,
        246,
    )
    assert out["workdays"] == ["2027-01-09", "2027-02-13", "2027-10-09"]
    assert out["imported_by"] == "operator" and len(out["sha256"]) == 64
    text = invoke("show", "--home", home, "2027")
    assert text.exit_code == 0 and "2027  imported  TEST DATA" in text.stdout


def test_coverage(home: Path, tmp_path: Path) -> None:
    r = invoke("coverage", "--home", home, "--json")
    assert r.exit_code == 0, r.output
    before = json.loads(r.stdout)
    assert [c["year"] for c in before] == list(range(2004, 2027))
    assert {c["kind"] for c in before} == {"package"}
    invoke("import", "--home", home, write_calendar(tmp_path / "c.toml"))
    after = json.loads(invoke("coverage", "--home", home, "--json").stdout)
    assert after[-1] == {"year": 2027, "kind": "imported", "source": FICTIONAL_2027.source}
    text = invoke("coverage", "--home", home)
    assert text.exit_code == 0
    assert "2004-2026  package   chinese-calendar" in text.stdout
    assert "2027       imported  TEST DATA" in text.stdout


def test_not_a_node_home(tmp_path: Path) -> None:
    assert_error(invoke("coverage", "--home", tmp_path), 3, "E_CONFIG")


@pytest.mark.parametrize("command", ["import", "show", "coverage"])
def test_help_has_examples(command: str) -> None:
    r = invoke(command, "--help")
    assert r.exit_code == 0 and "Examples" in r.stdout and "exchange-server calendar" in r.stdout
