"""Cells a spreadsheet would execute, neutralised in every table meant to be opened by people.

Excel, WPS and LibreOffice read a CSV cell whose text begins with ``=``, ``+``, ``-``, ``@``, a
tab or a carriage return as a formula (CSV injection: ``=HYPERLINK(...)``, ``@SUM(...)``,
``=cmd|...``). Such text can reach a table from a requester's persons list (a name) or a
provider's values. In the CSV files the node writes for people (result segments, relayed
persons lists, cross-comparison findings) and in the client's ``pull --format csv`` /
``csv-gb18030`` conversions, such a cell gets a leading apostrophe, which spreadsheets show as
text and do not display; a plain number (``-3``, ``+2.50``) is left alone. Programs get the raw
values from Parquet (``result_format = "parquet"``, ``pull --format parquet`` of a Parquet
member) and XLSX cells are written as text, never as formulas.

:func:`spreadsheet_safe` (Python) and :func:`spreadsheet_safe_sql` (DuckDB) are the one rule;
tests hold them to the same answers.
"""

from __future__ import annotations

import re

__all__ = ["FORMULA_START", "spreadsheet_safe", "spreadsheet_safe_sql"]

#: First characters that make a spreadsheet evaluate a cell.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)"
_NUMBER_RE = re.compile(_NUMBER)


def spreadsheet_safe(value: str) -> str:
    """``value`` with a leading apostrophe when a spreadsheet would run it as a formula."""
    if value.startswith(FORMULA_START) and not _NUMBER_RE.fullmatch(value):
        return "'" + value
    return value


def spreadsheet_safe_sql(expr: str) -> str:
    """SQL: the text ``expr`` as :func:`spreadsheet_safe` returns it (NULL stays NULL).
    ``expr`` appears several times: pass a column."""
    starts = ", ".join(f"chr({ord(c)})" for c in FORMULA_START)
    return (
        f"CASE WHEN left({expr}, 1) IN ({starts}) "
        f"AND NOT regexp_full_match({expr}, '{_NUMBER}') THEN '''' || {expr} ELSE {expr} END"
    )
