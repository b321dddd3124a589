"""The spreadsheet-formula rule: Python and DuckDB give the same answer for any text."""

from __future__ import annotations

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange_common.tables.formulas import spreadsheet_safe, spreadsheet_safe_sql
from exchange_common.tables.sql import quote_literal


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("=1+1", "'=1+1"),
        ("+86 138 0000 0000", "'+86 138 0000 0000"),
        ("-H1", "'-H1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("-3.50", "-3.50"),
        ("+2", "+2"),
        ("-.5", "-.5"),
        ("张三", "张三"),
        ("'=1", "'=1"),  # already text: not prefixed twice
        ("", ""),
        ("a=1", "a=1"),
    ],
)
def test_examples(value: str, shown: str) -> None:
    assert spreadsheet_safe(value) == shown


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet=st.sampled_from("=+-@\t\r.0123456789aX张' "), max_size=8)
    | st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))
)
def test_sql_agrees_with_python(value: str) -> None:
    (got,) = duckdb.sql(
        f"SELECT {spreadsheet_safe_sql('v')} FROM (SELECT {quote_literal(value)} AS v)"  # noqa: S608
    ).fetchone() or (None,)
    assert got == spreadsheet_safe(value)
