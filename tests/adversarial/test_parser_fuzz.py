"""Property tests: the parsers a peer (or a catalog file) reaches beyond the bundle format, fed
hostile input, refuse it with the project's errors and nothing else.

Attack: an application JSON, a catalog TOML or a table crafted to crash a parser (an exception
that escapes as a traceback and jams the pipeline, as a 5,000-digit count once did). Hypothesis
generates arbitrary JSON values and mutations of real ones; each case must either parse or
raise :class:`Refusal` / :class:`InputError` / :class:`PeerError` (bounded time: no case may
hang, the whole module runs in seconds).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange_common.catalog import load_catalog, parse_catalog
from exchange_common.errors import InputError, PeerError
from exchange_common.tables.rows import check_columns, row_plan
from exchange_common.tables.source import declared_rows, table_source
from exchange_server.pipeline.application import parse_application
from exchange_server.pipeline.router import Refusal

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "catalog.example.toml"
CATALOG_TEXT = EXAMPLE.read_text("utf-8")
CATALOG = load_catalog(EXAMPLE)

#: A valid application, as the client sends it.
APPLICATION: dict[str, Any] = {
    "business_type": "最低生活保障",
    "persons": 3,
    "purpose": "低保审核",
    "resources": [{"code": "RS-SI-01", "items": ["险种类型"]}, "RS-JY-01"],
    "time_range": "",
    "result_format": "csv",
}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True)
    | st.text(max_size=40)
    | st.just("9" * 5000),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


@FUZZ
@given(key=st.sampled_from(sorted(APPLICATION)), value=json_values)
def test_application_field_replaced_by_anything(key: str, value: Any) -> None:
    with contextlib.suppress(Refusal):
        parse_application({**APPLICATION, key: value})


@FUZZ
@given(fields=st.dictionaries(st.text(max_size=16), json_values, max_size=8))
def test_application_of_arbitrary_fields(fields: dict[str, Any]) -> None:
    with contextlib.suppress(Refusal):
        parse_application(fields)


@FUZZ
@given(
    cut=st.integers(min_value=0, max_value=len(CATALOG_TEXT)),
    insert=st.text(max_size=30),
)
def test_catalog_toml_mutated(cut: int, insert: str) -> None:
    with contextlib.suppress(InputError):
        parse_catalog(CATALOG_TEXT[:cut] + insert + CATALOG_TEXT[cut + len(insert) :])


@FUZZ
@given(text=st.text(max_size=300))
def test_catalog_of_arbitrary_text(text: str) -> None:
    with contextlib.suppress(InputError):
        parse_catalog(text)


header_cells = st.sampled_from(
    ["公民身份号码", "就业状态", "就业单位名称", "登记日期", "", "工资", '"', "=1+1", "\ufeff"]
)
cells = st.text(max_size=20) | st.sampled_from(["", " ", "2025-13-45", "0" * 18, "x" * 5000])


@FUZZ
@given(
    header=st.lists(header_cells, min_size=0, max_size=6),
    rows=st.lists(st.lists(cells, max_size=7), max_size=6),
    sep=st.sampled_from([",", ";", "\t"]),
)
def test_answer_csv_of_arbitrary_cells(
    tmp_path_factory: pytest.TempPathFactory, header: list[str], rows: list[list[str]], sep: str
) -> None:
    resource = CATALOG.resource("RS-JY-01")
    assert resource is not None
    path = tmp_path_factory.mktemp("t") / "answer.csv"
    text = "\n".join(sep.join(r) for r in [header, *rows]) + "\n"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    con = duckdb.connect()
    try:
        src = table_source(path)
        columns = check_columns(con, resource, path, src)
        plan = row_plan(resource, columns, dt.date(2026, 12, 2))
        con.execute(f"SELECT count(*) FROM ({plan.sql(src)})").fetchall()  # noqa: S608
    except (InputError, PeerError):
        pass
    except duckdb.Error as e:  # the node maps a read failure to E_SCHEMA (source.unreadable)
        assert "CSV" in str(e) or "Conversion" in str(e) or "Invalid" in str(e), e
    finally:
        con.close()


@FUZZ
@given(data=st.binary(max_size=2000))
def test_parquet_footer_of_arbitrary_bytes(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    path = tmp_path_factory.mktemp("p") / "table.parquet"
    path.write_bytes(b"PAR1" + data + b"PAR1")
    try:
        rows = declared_rows(path)
    except InputError as e:
        assert e.code == "E_SCHEMA"
    else:
        assert rows is not None and rows >= 0
