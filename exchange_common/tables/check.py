"""The department client's check of a table before sealing: the node's rules, with line numbers.

:func:`check_table` runs on a UTF-8 CSV (or Parquet) table exactly the SQL the node runs when
the bundle arrives — the catalog resource's row checks (:mod:`exchange_common.tables.rows`)
for a data push, the persons-list checks (:mod:`exchange_common.tables.persons`) for a query —
so the client refuses what the node would refuse, for the same reason, before anything is
sent. A column problem raises the node's ``E_SCHEMA``; each bad row is reported with its line,
the node's reason code (``E_ID:公民身份号码``, ``E_REQUIRED:…``, ``E_AUTHORIZATION``, …) and the
row's key masked (:func:`~exchange_common.masking.mask_id`); for an ID number the GB 11643 step
that failed (``ID_CHECKSUM``, …) is added, so the operator knows what to fix.

Without a catalog resource (the client has no catalog yet), a data push is checked by the
generic resource of :func:`generic_resource`: every column whose header names an ID number
(``身份证号``, ``公民身份号码``, ``id_number``, …) must hold valid GB 11643 numbers, nothing else
is checked.
"""

# SQL is assembled from quoted identifiers and literals only.
# ruff: noqa: S608

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from exchange_common.catalog import Item, ItemType, Resource, SharingType
from exchange_common.idnumber import IdNumberError, normalize_id
from exchange_common.masking import mask_id
from exchange_common.tables.persons import PERSON_HEADERS, persons_columns, persons_sql
from exchange_common.tables.rows import check_columns, row_plan
from exchange_common.tables.source import describe, table_source, unreadable
from exchange_common.tables.sql import quote_ident, quote_literal

__all__ = [
    "ID_HEADERS",
    "MAX_PROBLEMS",
    "RowProblem",
    "TableCheck",
    "check_table",
    "generic_resource",
]

#: At most this many row problems are kept (all are counted).
MAX_PROBLEMS = 1000
#: Headers that name an ID number column (compared after strip and lower-casing).
ID_HEADERS = PERSON_HEADERS["id_number"]


@dataclass(frozen=True)
class RowProblem:
    """One rejected row: its line (header = line 1), the node's reason code, and the key
    masked (never a full ID number, never a name)."""

    line: int
    code: str
    masked_id: str
    #: The GB 11643 step that failed, for an ID-number problem (``ID_CHECKSUM``, ...).
    detail: str = ""

    def __str__(self) -> str:
        code = f"{self.code} ({self.detail})" if self.detail else self.code
        return f"line {self.line}: {code}" + (f" [{self.masked_id}]" if self.masked_id else "")


@dataclass
class TableCheck:
    """What :func:`check_table` found. Holds no personal data."""

    rows: int = 0
    valid: int = 0
    #: Rejected rows by reason code (all counted).
    by_reason: dict[str, int] = field(default_factory=dict)
    #: The first :data:`MAX_PROBLEMS` rejected rows, in line order.
    problems: list[RowProblem] = field(default_factory=list)
    #: The CSV encoding the client read the original with (None for XLSX and Parquet).
    encoding: str | None = None

    @property
    def invalid(self) -> int:
        """Rows rejected."""
        return self.rows - self.valid

    def add(self, problem: RowProblem) -> None:
        """Count and remember a problem the client found itself (up to :data:`MAX_PROBLEMS`)."""
        self.by_reason[problem.code] = self.by_reason.get(problem.code, 0) + 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)


def generic_resource(header: Sequence[str]) -> Resource:
    """The resource a data table is checked against when no catalog is known: every column
    kept as text, the columns named as ID numbers (:data:`ID_HEADERS`) checked by GB 11643."""
    ids = [h for h in header if h.strip().lower() in ID_HEADERS]
    items = tuple(
        Item(h, ItemType.ID_NUMBER if h in ids else ItemType.STRING) for h in dict.fromkeys(header)
    )
    return Resource(
        code="(no catalog)",
        name="",
        classification="",
        provider="",
        format="table",
        update_period="",
        sharing_type=SharingType.NONE,
        sharing_method="",
        source_system="",
        security_level=1,
        items=items,
        key_item=ids[0] if ids else (items[0].name if items else ""),
    )


def _id_detail(raw: str | None, today: dt.date) -> str:
    """The GB 11643 step ``raw`` fails (``ID_…``), or "" when it is blank or passes."""
    if not raw:
        return ""
    try:
        normalize_id(raw, today=today)
    except IdNumberError as e:
        return e.code
    return ""


def check_table(
    table: Path,
    *,
    kind: str,
    today: dt.date,
    resource: Resource | None = None,
    lines: Sequence[int] | None = None,
    valid_out: Path | None = None,
    require_authorization: bool = True,
) -> TableCheck:
    """Check ``table`` (UTF-8 CSV or Parquet) as the node will: ``kind`` ``query`` (a persons
    list) or ``data`` (rows of ``resource``, or of :func:`generic_resource` when None).

    ``lines`` maps the n-th data row to the line of the original file (so a problem names the
    line the operator sees); by default row n is line n + 1. With ``valid_out``, when some row
    is invalid, the valid rows, unchanged and in order, are written there as a UTF-8 CSV with
    the same header (in the same pass); when every row is valid nothing is written there: the
    table itself is the valid rows.
    ``require_authorization`` false: a persons row without an authorization reference passes
    (the node will suspend the query until a supplement brings it).
    Raises InputError ``E_SCHEMA`` (columns that do not fit, an unreadable table) or
    ``E_ENCODING`` (a CSV that is not UTF-8), exactly as the node would.
    """
    con = duckdb.connect(config={"threads": 1})  # one thread: rows keep their file order
    try:
        src = table_source(table)
        columns = describe(con, "table", table, src)
        if kind == "query":
            chosen = persons_columns(columns)
            id_col = chosen["id_number"]
            key = id_col[0] if id_col is not None else None
        else:
            resource = resource or generic_resource(list(columns))
            key = resource.key_item if resource.key_item in columns else None
        key_sql = f"CAST({quote_ident(key)} AS VARCHAR)" if key else "CAST(NULL AS VARCHAR)"
        con.execute(
            f"CREATE TEMP TABLE numbered AS SELECT row_number() OVER () AS _row, "
            f"{key_sql} AS _key, * FROM {src}"
        )
        if kind == "query":
            checked = persons_sql(
                chosen,
                "numbered",
                today=today,
                keep=("_row", "_key"),
                require_authorization=require_authorization,
            )
        else:
            assert resource is not None
            plan = row_plan(resource, check_columns(con, resource, table, src), today)
            checked = plan.sql("numbered", keep=("_row", "_key"))
        con.execute(f"CREATE TEMP TABLE checked AS SELECT _row, _key, _reject FROM ({checked})")
        result = _summarise(con, lines, today)
        if valid_out is not None and result.invalid:
            con.execute(
                "COPY (SELECT n.* EXCLUDE (_row, _key) FROM numbered n JOIN checked c USING (_row) "
                f"WHERE c._reject IS NULL ORDER BY _row) TO {quote_literal(str(valid_out))} "
                "(FORMAT csv, HEADER true, DELIMITER ',', QUOTE '\"', ESCAPE '\"')"
            )
        return result
    except duckdb.Error as e:
        raise unreadable("table", table, e) from None
    finally:
        con.close()


def _summarise(
    con: duckdb.DuckDBPyConnection, lines: Sequence[int] | None, today: dt.date
) -> TableCheck:
    total = con.execute("SELECT count(*) FROM checked").fetchone()
    result = TableCheck(rows=int(total[0]) if total else 0)
    for reason, n in con.execute(
        "SELECT _reject, count(*) FROM checked WHERE _reject IS NOT NULL GROUP BY 1 ORDER BY 2 DESC"
    ).fetchall():
        result.by_reason[str(reason)] = int(n)
    result.valid = result.rows - sum(result.by_reason.values())
    for row, raw, reason in con.execute(
        "SELECT _row, _key, _reject FROM checked WHERE _reject IS NOT NULL "
        f"ORDER BY _row LIMIT {MAX_PROBLEMS}"
    ).fetchall():
        line = lines[int(row) - 1] if lines is not None else int(row) + 1
        code = str(reason)
        detail = _id_detail(raw, today) if code.startswith("E_ID") else ""
        result.problems.append(RowProblem(line, code, mask_id(raw or ""), detail))
    return result
