"""The comparison engine on hand-made and generated data with known answers."""

# ruff: noqa: S608

from __future__ import annotations

import csv
import datetime as dt
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import pytest

from exchange_common.catalog import Resource, check_access, parse_catalog
from exchange_common.errors import InputError
from exchange_common.idnumber import check_character, is_valid_id
from exchange_common.tables.sql import quote_literal
from exchange_server.data.datasets import DatasetStore
from exchange_server.data.duck import KEY_NAME
from exchange_server.data.engine import MatchResult, match, parse_time_range
from exchange_server.data.synthetic import (
    persons_sql,
    write_dataset,
    write_persons,
)
from tests.conftest import CAFixture
from tests.server.world import build_world

CATALOG = """
[[resource]]
code = "RS"
name = "社会保险"
classification = "人社"
provider = "RS01"
format = "csv"
update_period = "每月"
sharing_type = "conditional"
sharing_conditions = "持授权"
sharing_method = "批量比对"
source_system = "人社系统"
security_level = 3
key_item = "公民身份号码"
time_item = "数据日期"
[[resource.item]]
name = "公民身份号码"
type = "id_number"
[[resource.item]]
name = "险种类型"
type = "code"
values = ["基本养老保险", "失业保险"]
[[resource.item]]
name = "待遇领取金额"
type = "decimal"
[[resource.item]]
name = "数据日期"
type = "date"
[[resource.scope]]
departments = ["MZ*"]
business_types = ["低保"]
[[resource.scope]]
departments = ["MZ*"]
business_types = ["临时救助"]
items = ["险种类型", "数据日期"]

[[resource]]
code = "NT"
name = "无时间项"
classification = "x"
provider = "X01"
format = "csv"
update_period = "每年"
sharing_type = "unconditional"
sharing_method = "批量比对"
source_system = "x"
security_level = 1
key_item = "证件号"
[[resource.item]]
name = "证件号"
type = "id_number"
[[resource.item]]
name = "备注"
"""


def _id(body: str) -> str:
    return body + check_character(body)


A = _id("33010219800101001")
B = _id("33010219900202002")
C = next(
    _id(f"4206251975030300{d}") for d in range(10) if check_character(f"4206251975030300{d}") == "X"
)
D = _id("33010520000404004")
E = next(
    _id(f"3301061965050500{d}") for d in range(10) if check_character(f"3301061965050500{d}") == "X"
)
assert C.endswith("X") and E.endswith("X")

PERSONS = [
    (A, "张伟", "H1"),
    (B, "李娜", "H1"),
    (C.lower(), "王芳", "H2"),  # lower-case x in the persons list, upper in the data
    (D, "刘强", "H2"),
    (A, "张伟", "H1"),  # listed twice
    (E, "陈静", "H3"),  # upper in the list, lower in the data
]
RECORDS = [
    (A, "基本养老保险", "1000.50", "2024/01/01"),
    (A, "基本养老保险", "1100.50", "2024/02/01"),
    (A, "基本养老保险", "1200.00", "2024/03/01"),
    (A, "失业保险", "300.00", "2024/03/01"),
    (C, "基本养老保险", "800.00", "2024/02/01"),
    (E.lower(), "失业保险", "50.25", "2023/12/01"),
    (_id("11010119700101003"), "基本养老保险", "999.00", "2024/03/01"),  # nobody asked
]


@pytest.fixture
def resource() -> Resource:
    res = parse_catalog(CATALOG).resource("RS")
    assert res is not None
    return res


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    persons = _write_csv(tmp_path / "persons.csv", ["id_number", "name", "household_id"], PERSONS)
    data = _write_csv(
        tmp_path / "data.csv", ["公民身份号码", "险种类型", "待遇领取金额", "数据日期"], RECORDS
    )
    return persons, data


def _rows(path: Path) -> list[dict[str, Any]]:
    reader = "read_csv" if path.suffix == ".csv" else "read_parquet"
    rel = duckdb.sql(f"SELECT * FROM {reader}('{path}')")
    return [dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()]


def _by_person(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r["id_number"], []).append(r)
    return out


def test_latest_hits_misses_duplicates_and_x(
    tmp_path: Path, resource: Resource, files: tuple[Path, Path]
) -> None:
    persons, data = files
    res = match(persons, data, resource, resource.item_names, tmp_path / "out")
    assert (res.persons, res.duplicates, res.matched_persons) == (5, 1, 3)
    assert res.records == 4  # A twice (both on 2024/03/01), C once, E once
    rows = _sorted_rows(res.results)  # Parquet: in no particular order
    got = _by_person(rows)
    assert [r["row_no"] for r in rows] == [1, 1, 2, 3, 4, 6]
    assert sorted(r["险种类型"] for r in got[A]) == ["基本养老保险", "失业保险"]
    assert all(r["数据日期"] == dt.date(2024, 3, 1) for r in got[A])
    assert [r["status"] for r in got[B]] == ["no_record"]
    assert got[B][0]["险种类型"] is None
    assert got[C][0]["status"] == "match" and got[C][0]["name"] == "王芳"
    assert got[E][0]["待遇领取金额"] == pytest.approx(50.25)
    assert got[D][0]["status"] == "no_record"
    assert "公民身份号码" not in rows[0]  # the key is the requester's own id_number column
    households = {r["household_id"]: r for r in _rows(res.household_summary)}
    assert households["H1"]["persons"] == 2
    assert households["H1"]["persons_with_records"] == 1
    assert households["H1"]["records"] == 2
    assert households["H1"]["待遇领取金额_合计"] == pytest.approx(1500.0)
    assert households["H2"]["persons_with_records"] == 1
    assert res.households == 3


def _sorted_rows(path: Path) -> list[dict[str, Any]]:
    """Result rows in list order; a person's records on one date in a fixed order."""
    return sorted(_rows(path), key=lambda r: (r["row_no"], str(r.get("数据日期")), str(r)))


def _counts(res: MatchResult) -> dict[str, Any]:
    return {
        k: v
        for k, v in res.as_json().items()
        if k not in {"results", "household_summary", "timings"}
    }


def test_stored_dataset_is_matched_with_the_data_key_like_plain_files(
    tmp_path: Path, resource: Resource, files: tuple[Path, Path], test_ca: CAFixture
) -> None:
    persons, data = files
    (tmp_path / "world").mkdir()
    world = build_world(tmp_path / "world", test_ca)
    store = DatasetStore(world.node)
    header = ["公民身份号码", "险种类型", "待遇领取金额", "数据日期"]
    for mode, rows in (("full", RECORDS[:4]), ("increment", RECORDS[4:])):
        table = _write_csv(tmp_path / f"{mode}.csv", header, rows)
        report = store.ingest(
            resource,
            table,
            bundle_id=str(uuid.uuid4()),
            provider="RS01",
            mode=mode,
            catalog_version=1,
            work=tmp_path,
            now=dt.datetime.now(dt.UTC),
        )
        assert report.rejected == 0
    stored = store.current_files(resource.code)
    assert len(stored) == 2
    sealed_persons = tmp_path / "persons.parquet"  # what the node keeps of a query: encrypted
    con = store.connect()
    con.execute(
        f"COPY (SELECT * FROM read_csv({quote_literal(str(persons))}, all_varchar = true)) "
        f"TO {quote_literal(str(sealed_persons))} "
        f"(FORMAT parquet, ENCRYPTION_CONFIG {{footer_key: '{KEY_NAME}'}})"
    )
    con.close()
    for time_range in ("", "2024/02/15", "2024/01/01-2024/02/29"):
        got = match(
            sealed_persons,
            stored,
            resource,
            resource.item_names,
            tmp_path / f"enc{time_range.replace('/', '')}",
            time_range=time_range,
            data_key=store.data_key(),
        )
        want = match(
            persons,
            data,
            resource,
            resource.item_names,
            tmp_path / f"plain{time_range.replace('/', '')}",
            time_range=time_range,
        )
        assert _counts(got) == _counts(want)
        assert _sorted_rows(got.results) == _sorted_rows(want.results)
        assert _rows(got.household_summary) == _rows(want.household_summary)
    assert (got.matched_persons, got.records) == (2, 3)
    with pytest.raises(InputError) as e:
        match(sealed_persons, [], resource, [], tmp_path / "o", data_key=store.data_key())
    assert e.value.code == "E_NO_DATA"
    with pytest.raises(InputError) as e:
        match(persons, stored, resource, [], tmp_path / "o")
    assert e.value.code == "E_FORMAT"


def test_records_within_a_range_come_in_date_order(
    tmp_path: Path, resource: Resource, files: tuple[Path, Path]
) -> None:
    persons, data = files
    res = match(
        persons,
        data,
        resource,
        ["数据日期"],
        tmp_path / "o",
        time_range="2023/01/01-2024/12/31",
        fmt="csv",  # CSV, for people, comes in list order
    )
    rows = _rows(res.results)
    assert [r["row_no"] for r in rows] == sorted(r["row_no"] for r in rows)
    assert [r["数据日期"] for r in _by_person(rows)[A]] == [
        dt.date(2024, 1, 1),
        dt.date(2024, 2, 1),
        dt.date(2024, 3, 1),
        dt.date(2024, 3, 1),
    ]
    assert res.records == 6


def test_blank_and_padded_ids_are_normalised_on_both_sides(
    tmp_path: Path, resource: Resource
) -> None:
    persons = _write_csv(
        tmp_path / "persons.csv",
        ["id_number", "name", "household_id"],
        [
            (f" {E.lower()} ", "陈静", "H1"),
            ("", "无号", "H1"),
            ("  ", "无号二", "H2"),
            (A, "张伟", "H2"),
        ],
    )
    data = _write_csv(
        tmp_path / "data.csv",
        ["公民身份号码", "险种类型", "待遇领取金额", "数据日期"],
        [(f"{E} ", "失业保险", "10.00", "2024/01/01"), ("", "失业保险", "1.00", "2024/01/01")],
    )
    res = match(persons, data, resource, resource.item_names, tmp_path / "o")
    assert (res.persons, res.duplicates, res.matched_persons, res.records) == (3, 1, 1, 1)
    rows = _sorted_rows(res.results)
    assert [(r["row_no"], r["id_number"], r["status"]) for r in rows] == [
        (1, E, "match"),
        (2, None, "no_record"),  # a blank ID is one person, never matched; row 3 repeats it
        (4, A, "no_record"),
    ]
    households = {r["household_id"]: r for r in _rows(res.household_summary)}
    assert (households["H1"]["persons"], households["H1"]["records"]) == (1, 1)
    assert households["H1"]["待遇领取金额_合计"] == pytest.approx(10.0)
    assert (households["H2"]["persons"], households["H2"]["persons_with_records"]) == (1, 0)
    assert households["H2"]["records"] == 0 and households["H2"]["待遇领取金额_合计"] is None


def test_single_date_is_the_state_on_that_day(
    tmp_path: Path, resource: Resource, files: tuple[Path, Path]
) -> None:
    persons, data = files
    res = match(
        persons,
        data,
        resource,
        ["待遇领取金额", "数据日期"],
        tmp_path / "o",
        time_range="2024/02/15",
    )
    got = _by_person(_rows(res.results))
    assert [r["待遇领取金额"] for r in got[A]] == [pytest.approx(1100.5)]
    assert got[C][0]["数据日期"] == dt.date(2024, 2, 1)
    assert got[E][0]["数据日期"] == dt.date(2023, 12, 1)  # still the latest on that day
    res = match(persons, data, resource, ["数据日期"], tmp_path / "o2", time_range="2023/06/30")
    assert res.matched_persons == 0
    assert {r["status"] for r in _rows(res.results)} == {"no_record"}


def test_range_returns_every_record_inside(
    tmp_path: Path, resource: Resource, files: tuple[Path, Path]
) -> None:
    persons, data = files
    res = match(
        persons,
        data,
        resource,
        ["数据日期"],
        tmp_path / "o",
        time_range="2024/01/01-2024/02/29",
        fmt="csv",
    )
    assert res.results.suffix == ".csv"
    got = _by_person(_rows(res.results))
    assert sorted(str(r["数据日期"]) for r in got[A]) == ["2024-01-01", "2024-02-01"]
    assert got[E][0]["status"] == "no_record"
    assert res.time_range == "2024/01/01-2024/02/29"


def test_only_visible_items_are_returned(
    tmp_path: Path, resource: Resource, files: tuple[Path, Path]
) -> None:
    cat = parse_catalog(CATALOG)
    decision = check_access(cat, "MZ330102", "临时救助", "RS")
    assert decision.allowed
    persons, data = files
    res = match(persons, data, resource, decision.items, tmp_path / "o")
    columns = list(_rows(res.results)[0])
    assert columns == [
        "row_no",
        "id_number",
        "name",
        "household_id",
        "status",
        "险种类型",
        "数据日期",
    ]
    assert "待遇领取金额_合计" not in _rows(res.household_summary)[0]


def test_parquet_dataset_with_real_dates(
    tmp_path: Path, resource: Resource, files: tuple[Path, Path]
) -> None:
    persons, data = files
    pq = tmp_path / "data.parquet"
    duckdb.sql(
        f"COPY (SELECT 公民身份号码, 险种类型, CAST(待遇领取金额 AS DECIMAL(12,2)) AS 待遇领取金额, "
        f"CAST(strptime(数据日期, '%Y/%m/%d') AS DATE) AS 数据日期 "
        f"FROM read_csv('{data}', all_varchar=true)) TO '{pq}' (FORMAT parquet)"
    )
    res = match(persons, pq, resource, resource.item_names, tmp_path / "o")
    assert (res.matched_persons, res.records) == (3, 4)


def test_refusals(tmp_path: Path, resource: Resource, files: tuple[Path, Path]) -> None:
    persons, data = files
    for bad in ("2024-01-01", "2024/02/30", "2024/03/01-2024/01/01", "latest"):
        with pytest.raises(InputError) as e:
            parse_time_range(bad)
        assert e.value.code == "E_TIME_RANGE"
    with pytest.raises(InputError) as e:
        match(persons, data, resource, ["银行卡号"], tmp_path / "o")
    assert e.value.code == "E_ITEM"
    broken = _write_csv(tmp_path / "broken.csv", ["公民身份号码", "数据日期"], [(A, "2024/01/01")])
    with pytest.raises(InputError) as e:
        match(persons, broken, resource, ["险种类型"], tmp_path / "o")
    assert e.value.code == "E_SCHEMA"
    with pytest.raises(InputError) as e:
        match(data, data, resource, ["险种类型"], tmp_path / "o")
    assert e.value.code == "E_SCHEMA"
    no_time = parse_catalog(CATALOG).resource("NT")
    assert no_time is not None
    with pytest.raises(InputError) as e:
        match(persons, data, no_time, ["备注"], tmp_path / "o", time_range="2024/01/01")
    assert e.value.code == "E_TIME_RANGE"
    with pytest.raises(InputError) as e:
        match(persons, tmp_path / "missing.parquet", resource, [], tmp_path / "o")
    assert e.value.code == "E_NOT_FOUND"


def test_parse_time_range_forms() -> None:
    assert parse_time_range("").latest and parse_time_range(None).latest
    one = parse_time_range(" 2024/02/29 ")
    assert one.as_of and one.end == dt.date(2024, 2, 29) and str(one) == "2024/02/29"
    span = parse_time_range("2024/01/01 - 2024/12/31")
    assert (span.start, span.end) == (dt.date(2024, 1, 1), dt.date(2024, 12, 31))


# ----------------------------------------------------------------------------- generated data


def test_generated_ids_are_valid_unique_and_stable() -> None:
    rows = duckdb.sql(persons_sql(20_000, seed=3)).fetchall()
    ids = [r[0] for r in rows]
    assert all(is_valid_id(i, today=dt.date(2026, 12, 1)) for i in ids)
    assert len(set(ids)) == len(ids)
    assert all(1925 <= int(i[6:10]) <= 2025 for i in ids)
    assert all(r[1] and 2 <= len(r[1]) <= 3 for r in rows)
    sizes = Counter(r[2] for r in rows)
    assert set(sizes.values()) <= {1, 2, 3}
    assert Counter(sizes.values())[1] <= 1  # only the last household may be cut short
    assert duckdb.sql(persons_sql(5, seed=3, start=100)).fetchall() == rows[100:105]


def test_engine_agrees_with_python_on_generated_data(tmp_path: Path) -> None:
    cat = parse_catalog(
        Path(__file__).resolve().parents[3].joinpath("config/catalog.example.toml").read_text()
    )
    res = cat.resource("RS-SI-01")
    assert res is not None
    persons, data = tmp_path / "p.parquet", tmp_path / "d.parquet"
    write_persons(persons, 3_000, seed=7)
    write_dataset(data, res, 20_000, population=6_000, seed=7)
    wanted = {r[0] for r in duckdb.sql(f"SELECT id_number FROM '{persons}'").fetchall()}
    records = duckdb.sql(f"SELECT 公民身份号码, 数据日期 FROM '{data}'").fetchall()
    assert all(is_valid_id(r[0], today=dt.date(2026, 12, 1)) for r in records)
    latest: dict[str, dt.date] = {}
    for key, day in records:
        if key in wanted:
            latest[key] = max(day, latest.get(key, day))
    expected_records = sum(1 for key, day in records if latest.get(key) == day)
    result = match(persons, data, res, res.item_names, tmp_path / "out")
    assert result.matched_persons == len(latest)
    assert 0 < len(latest) < 3_000  # some hits, some misses
    assert result.records == expected_records
    assert result.persons - result.matched_persons == 3_000 - len(latest)


def test_csv_results_neutralise_formulas_and_parquet_keeps_raw_values(
    tmp_path: Path, resource: Resource
) -> None:
    """CSV injection: a name, a household and a provider's value that a spreadsheet would run
    reach the CSV result (meant for people) with a leading apostrophe; negative amounts stay
    numbers; the Parquet result (for programs) keeps every value as it was."""
    persons = _write_csv(
        tmp_path / "persons.csv",
        ["id_number", "name", "household_id"],
        [(A, '=HYPERLINK("http://x","点击")', "-H1"), (E, "@SUM(A1)", "+1")],
    )
    data = _write_csv(
        tmp_path / "data.csv",
        ["公民身份号码", "险种类型", "待遇领取金额", "数据日期"],
        [(A, "=cmd|' /C calc'!A0", "-3.50", "2024-01-01"), (E, "失业保险", "2.00", "2024-01-01")],
    )
    out_csv = match(persons, data, resource, resource.item_names, tmp_path / "c", fmt="csv")
    with out_csv.results.open(encoding="utf-8", newline="") as fh:
        by_id = {r["id_number"]: r for r in csv.DictReader(fh)}
    assert by_id[A]["name"] == '\'=HYPERLINK("http://x","点击")'
    assert by_id[A]["household_id"] == "'-H1" and by_id[A]["险种类型"] == "'=cmd|' /C calc'!A0"
    assert float(by_id[A]["待遇领取金额"]) == -3.5  # a number, not a formula: no apostrophe
    assert by_id[E]["name"] == "'@SUM(A1)" and by_id[E]["household_id"] == "+1"
    with out_csv.household_summary.open(encoding="utf-8", newline="") as fh:
        assert {r["household_id"] for r in csv.DictReader(fh)} == {"'-H1", "+1"}
    raw = _rows(match(persons, data, resource, resource.item_names, tmp_path / "p").results)
    by_id_raw = {r["id_number"]: r for r in raw}
    assert by_id_raw[A]["name"] == '=HYPERLINK("http://x","点击")'
    assert by_id_raw[A]["险种类型"] == "=cmd|' /C calc'!A0"
