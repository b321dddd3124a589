"""The persons list of a query: columns by role, normalisation, checks, encrypted copy."""

# ruff: noqa: S608

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from exchange_common.errors import InputError
from exchange_common.idnumber import check_character, china_today
from exchange_common.tables.check import check_table
from exchange_common.tables.persons import persons_columns
from exchange_server.data.duck import KEY_NAME, connect
from exchange_server.data.persons import prepare_persons

KEY = base64.b64encode(bytes(range(32))).decode()
A = "33010219800101001" + check_character("33010219800101001")
B = "33010219900202002" + check_character("33010219900202002")
X = next(
    b + "X" for d in range(10) if check_character(b := f"1101051949123100{d}") == "X"
)  # a valid number ending in X


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    c = connect(KEY)
    yield c
    c.close()


def _read(con: duckdb.DuckDBPyConnection, path: Path) -> list[dict[str, object]]:
    rel = con.sql(
        f"SELECT id_number, name, household_id, \"authorization\" FROM read_parquet('{path}', "
        f"encryption_config = {{footer_key: '{KEY_NAME}'}})"
    )
    return [dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()]


def test_rows_are_trimmed_upper_cased_and_get_a_household(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    table = tmp_path / "persons.csv"
    table.write_text(
        "身份证号,姓名,户编号,授权编号,备注\n"
        f" {A} , 张三 ,H1,SQ-1,忽略\n"
        f"{X.lower()},欧阳娜娜,  ,SQ-2,\n"
        f"{B},\u3000ＡＢＣ\u3000王  五\t,H2,SQ-3,\n",  # full-width, ideographic space, tab
        encoding="utf-8",
    )
    target = tmp_path / "out.parquet"
    check = prepare_persons(con, table, target)
    assert (check.rows, check.bad_ids, check.unauthorized, check.ok) == (3, 0, 0, True)
    assert _read(con, target) == [
        {"id_number": A, "name": "张三", "household_id": "H1", "authorization": "SQ-1"},
        {"id_number": X, "name": "欧阳娜娜", "household_id": X, "authorization": "SQ-2"},
        {"id_number": B, "name": "ABC 王 五", "household_id": "H2", "authorization": "SQ-3"},
    ]
    assert A.encode() not in target.read_bytes()  # encrypted at rest
    with pytest.raises(duckdb.Error):
        duckdb.sql(f"SELECT * FROM read_parquet('{target}')").fetchall()


def test_parquet_with_typed_columns_and_english_headers(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    table = tmp_path / "persons.parquet"
    duckdb.sql(
        f"COPY (SELECT '{A}' AS ID_Number, '李四' AS Name, 42 AS household_id, "
        f"7 AS authorization_ref) TO '{table}' (FORMAT parquet)"
    )
    target = tmp_path / "out.parquet"
    assert prepare_persons(con, table, target).ok
    assert _read(con, target) == [
        {"id_number": A, "name": "李四", "household_id": "42", "authorization": "7"}
    ]


def test_bad_ids_and_missing_authorizations_are_counted_and_nothing_is_kept(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    table = tmp_path / "persons.csv"
    wrong_check = A[:-1] + ("0" if A[-1] != "0" else "1")
    table.write_text(
        "身份证号,姓名,授权编号\n"
        f"{A},张三,SQ-1\n"
        f"{wrong_check},李四,SQ-2\n"
        ",王五,SQ-3\n"  # blank ID
        f"{X},赵六,\n",  # no authorization
        encoding="utf-8",
    )
    target = tmp_path / "out.parquet"
    check = prepare_persons(con, table, target)
    assert (check.rows, check.bad_ids, check.unauthorized, check.ok) == (4, 2, 1, False)
    assert not target.exists()
    # the client's pre-seal check of the same list: the same rows, the same reasons, by line
    client = check_table(table, kind="query", today=china_today())
    assert (client.rows, client.by_reason) == (4, {"E_ID": 2, "E_AUTHORIZATION": 1})
    assert [(p.line, p.code) for p in client.problems] == [
        (3, "E_ID"),
        (4, "E_ID"),
        (5, "E_AUTHORIZATION"),
    ]
    assert client.problems[0].detail == "ID_CHECKSUM" and wrong_check not in str(client.problems)


def test_the_common_rule_converts_old_numbers_and_refuses_unknown_regions_and_the_future(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    sample = "11010519491231002X"  # GB 11643's example, listed in its 15-digit form
    nowhere = "99010519800101001" + check_character("99010519800101001")
    newborn = "33010220261123001" + check_character("33010220261123001")
    table = tmp_path / "persons.csv"
    table.write_text(
        f"身份证号,姓名,授权编号\n110105491231002,张三,SQ-1\n{newborn},李四,SQ-2\n",
        encoding="utf-8",
    )
    target = tmp_path / "out.parquet"
    check = prepare_persons(con, table, target, today=dt.date(2026, 11, 23))
    assert check.ok
    assert [r["id_number"] for r in _read(con, target)] == [sample, newborn]
    assert [r["household_id"] for r in _read(con, target)] == [sample, newborn]
    # the day before the birth, and a region code that never existed
    check = prepare_persons(con, table, target, today=dt.date(2026, 11, 22))
    assert (check.rows, check.bad_ids) == (2, 1)
    table.write_text(f"身份证号,姓名,授权编号\n{nowhere},王五,SQ-3\n", encoding="utf-8")
    check = prepare_persons(con, table, target, today=dt.date(2026, 11, 22))
    assert (check.rows, check.bad_ids, check.ok) == (1, 1, False)
    assert not target.exists()


@pytest.mark.parametrize(
    ("content", "code", "words"),
    [
        (
            "身份证号,姓名\n1,x\n".encode(),
            "E_SCHEMA",
            "authorization (authorization / authorization_ref / 授权编号",
        ),
        ("身份证号,姓名,授权编号\n张三,李四,王五\n".encode("gb18030"), "E_ENCODING", "UTF-8"),
        (f"身份证号,姓名,授权编号\n{A},张三,SQ,多余\n{A},李四,SQ\n".encode(), "E_SCHEMA", "read"),
    ],
    ids=["missing-authorization-column", "gb18030-csv", "field-too-many"],
)
def test_unreadable_persons_tables_are_refused_with_a_code(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, content: bytes, code: str, words: str
) -> None:
    table = tmp_path / "persons.csv"
    table.write_bytes(content)
    target = tmp_path / "out.parquet"
    with pytest.raises(InputError) as e:
        prepare_persons(con, table, target)
    assert e.value.code == code and words in e.value.message
    assert not target.exists()


def test_a_bad_row_past_the_sniffing_sample_leaves_no_file(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    table = tmp_path / "persons.csv"
    good = f"{A},张三,SQ-1\n"
    table.write_text(
        "身份证号,姓名,授权编号\n" + good * 50_000 + f"{A},张三,SQ-1,多余\n" + good, "utf-8"
    )
    target = tmp_path / "out.parquet"
    with pytest.raises(InputError) as e:
        prepare_persons(con, table, target)  # fails inside the COPY, after writing began
    assert e.value.code == "E_SCHEMA" and "line 50002" in e.value.message
    assert not target.exists()


def test_a_blank_first_line_is_refused(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    table = tmp_path / "persons.csv"
    table.write_text(f"\n身份证号,姓名,授权编号\n{A},张三,SQ-1\n", encoding="utf-8")
    with pytest.raises(InputError) as e:
        prepare_persons(con, table, tmp_path / "out.parquet")
    assert e.value.code == "E_SCHEMA" and "line 1 is empty" in e.value.message


def test_other_file_types_are_refused(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    table = tmp_path / "persons.xlsx"
    table.write_bytes(b"PK")
    with pytest.raises(InputError) as e:
        prepare_persons(con, table, tmp_path / "out.parquet")
    assert e.value.code == "E_SCHEMA"


def test_columns_are_found_by_role_first_match_case_insensitive() -> None:
    chosen = persons_columns(
        {
            "公民身份号码": "VARCHAR",
            "ID_NUMBER": "VARCHAR",
            "姓名": "VARCHAR",
            "授权书编号": "BIGINT",
        }
    )
    assert chosen["id_number"] == ("ID_NUMBER", "VARCHAR")  # id_number comes first in the list
    assert chosen["authorization"] == ("授权书编号", "BIGINT")
    assert chosen["household_id"] is None
