"""The row checks of a table pushed for a catalog resource: one first-failing reason per row.

:func:`row_plan` turns a :class:`~exchange_common.catalog.Resource` and the table's columns
into one query that types every item and adds ``_reject``, the first failing check of the row
(NULL when the row is valid): ``E_REQUIRED:<item>`` (the key item or a required item is
blank), ``E_ID:<item>`` (GB 11643, :mod:`exchange_common.idnumber`), ``E_INTEGER``,
``E_DECIMAL``, ``E_DATE`` (``YYYY-MM-DD``, ``YYYY/MM/DD``, ``YYYYMMDD``) and ``E_CODE`` (not
one of the item's values). :func:`check_columns` refuses a table whose columns do not fit the
resource. The node stores the checked rows (:mod:`exchange_server.data.datasets`); the client
runs the same query before sealing (:mod:`exchange_common.tables.check`).
"""

# SQL is assembled from quoted identifiers and literals only.
# ruff: noqa: S608

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from exchange_common.catalog import NUMERIC_TYPES, ItemType, Resource
from exchange_common.errors import InputError
from exchange_common.idnumber import id_normalize_sql, id_valid_sql
from exchange_common.masking import mask_id
from exchange_common.tables.source import describe
from exchange_common.tables.sql import date_sql, quote_ident, quote_literal, text_sql

__all__ = ["MAX_REJECT_SAMPLES", "RowPlan", "check_columns", "reject_summary", "row_plan"]

#: At most this many rejected rows are described one by one (all are counted).
MAX_REJECT_SAMPLES = 20

_q, _lit = quote_ident, quote_literal


#: SQL type of the stored column of each item type.
_SQL_TYPES = {
    ItemType.STRING: "VARCHAR",
    ItemType.CODE: "VARCHAR",
    ItemType.ID_NUMBER: "VARCHAR",
    ItemType.INTEGER: "BIGINT",
    ItemType.DECIMAL: "DECIMAL(18,2)",
    ItemType.DATE: "DATE",
}
_REASON_NAMES = {
    ItemType.ID_NUMBER: "E_ID",
    ItemType.INTEGER: "E_INTEGER",
    ItemType.DECIMAL: "E_DECIMAL",
    ItemType.DATE: "E_DATE",
    ItemType.CODE: "E_CODE",
}
#: Parquet column types read as numbers as they are (exact; floats go through text).
_EXACT_NUMBERS = re.compile(r"(U?(TINY|SMALL|BIG|HUGE)?INT(EGER)?|DECIMAL\(\d+,\s*\d+\))")


@dataclass
class RowPlan:
    """The ingest query in four layers over the source (each expression computed once):

    1. ``v<n>``: the cleaned text of item n (or its value, for a Parquet column already of a
       fitting type);
    2. ``t<n>``: the typed value;
    3. ``ok<n>``: for ID numbers, the GB 11643 check;
    4. the typed columns under their item names and ``_reject``, the first failing check.
    """

    values: list[str] = field(default_factory=list)
    typed: list[str] = field(default_factory=list)
    oks: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    checks: list[tuple[str, str]] = field(default_factory=list)

    def sql(self, source: str, *, keep: tuple[str, ...] = ()) -> str:
        """The query over relation ``source``: the typed items and ``_reject``; the columns
        named in ``keep`` (e.g. a line number) pass through unchanged, first."""
        reason = (
            "CASE " + " ".join(f"WHEN {c} THEN {_lit(r)}" for c, r in self.checks) + " END"
            if self.checks
            else "CAST(NULL AS VARCHAR)"
        )
        kept = "".join(f"{_q(k)}, " for k in keep)
        layer1 = f"SELECT {kept}{', '.join(self.values)} FROM {source}"
        layer2 = f"SELECT *, {', '.join(self.typed)} FROM ({layer1})"
        layer3 = f"SELECT *{''.join(', ' + o for o in self.oks)} FROM ({layer2})"
        return f"SELECT {kept}{', '.join(self.outputs)}, {reason} AS _reject FROM ({layer3})"


def row_plan(
    resource: Resource, columns: dict[str, str], today: dt.date, *, key_by_list: bool = False
) -> RowPlan:
    """The ingest query for a source with ``columns`` (name -> DuckDB type); ID numbers born
    after ``today`` are refused.

    ``key_by_list``: the key item is normalised but not checked against GB 11643 here: the
    caller compares it with a list of numbers already checked (a relay's persons list,
    :mod:`exchange_server.data.answers`), and checks only the keys not on it."""
    plan = RowPlan()
    for n, item in enumerate(resource.items):
        v, t, ok = f"v{n}", f"t{n}", f"ok{n}"
        target = _SQL_TYPES[item.type]
        plan.outputs.append(f"{t} AS {_q(item.name)}")
        if item.name not in columns:  # optional item the table does not carry: stored empty
            plan.values.append(f"CAST(NULL AS VARCHAR) AS {v}")
            plan.typed.append(f"CAST(NULL AS {target}) AS {t}")
            continue
        raw, source_type = _q(item.name), columns[item.name]
        bad: str | None = None
        if item.type is ItemType.DATE and (
            source_type == "DATE" or source_type.startswith("TIMESTAMP")
        ):
            plan.values.append(f"{raw} AS {v}")
            plan.typed.append(f"CAST({v} AS DATE) AS {t}")
        elif item.type in NUMERIC_TYPES and _EXACT_NUMBERS.fullmatch(source_type):
            plan.values.append(f"{raw} AS {v}")
            plan.typed.append(f"TRY_CAST({v} AS {target}) AS {t}")
            bad = f"{v} IS NOT NULL AND {t} IS NULL"
        else:
            plan.values.append(f"{text_sql(item.name, source_type)} AS {v}")
            if item.type is ItemType.ID_NUMBER:
                # stored canonical (exchange_common.idnumber): X upper-case, 15 digits converted
                plan.typed.append(f"{id_normalize_sql(v)} AS {t}")
                if not (key_by_list and item.name == resource.key_item):
                    plan.oks.append(f"{id_valid_sql(t, today=today)} AS {ok}")
                    bad = f"{t} IS NOT NULL AND NOT {ok}"
            elif item.type is ItemType.DATE:
                plan.typed.append(f"{date_sql(v)} AS {t}")
                bad = f"{v} IS NOT NULL AND {t} IS NULL"
            elif item.type in NUMERIC_TYPES:
                plan.typed.append(f"TRY_CAST({v} AS {target}) AS {t}")
                bad = f"{v} IS NOT NULL AND {t} IS NULL"
            else:
                plan.typed.append(f"{v} AS {t}")
                if item.type is ItemType.CODE and item.values:
                    allowed = ", ".join(_lit(x) for x in item.values)
                    bad = f"{t} IS NOT NULL AND {t} NOT IN ({allowed})"
        if item.required or item.name == resource.key_item:
            plan.checks.append((f"{v} IS NULL", f"E_REQUIRED:{item.name}"))
        if bad is not None:
            plan.checks.append((bad, f"{_REASON_NAMES.get(item.type, 'E_VALUE')}:{item.name}"))
    return plan


def check_columns(
    con: duckdb.DuckDBPyConnection, resource: Resource, table: Path, src: str
) -> dict[str, str]:
    """The table's columns (name -> DuckDB type), checked against the resource's items."""
    cols = describe(con, resource.code, table, src)
    unknown = [n for n, c in enumerate(cols, start=1) if resource.item(c) is None]
    if unknown:
        # Header names are not echoed: a name or an ID number used as a header (a table
        # without a header line, or a hostile one) must not reach a receipt, a log or the
        # store. The positions, and the items the resource has, find a typo as fast.
        shown = ", ".join(str(n) for n in unknown[:10]) + (", …" if len(unknown) > 10 else "")
        if resource.key_item not in cols:
            raise InputError(
                f"{resource.code}: the first line is not a header of item names (no column "
                f"{resource.key_item!r}; {len(unknown)} of {len(cols)} columns unknown)",
                code="E_SCHEMA",
            )
        raise InputError(
            f"{resource.code}: column(s) {shown} of {len(cols)} are not items of the resource "
            f"(its items: {', '.join(resource.item_names)})",
            code="E_SCHEMA",
        )
    if resource.key_item not in cols:
        raise InputError(
            f"{resource.code}: the key column {resource.key_item!r} is missing", code="E_SCHEMA"
        )
    missing = [i.name for i in resource.items if i.required and i.name not in cols]
    if missing:
        raise InputError(
            f"{resource.code}: required columns {missing} are missing", code="E_SCHEMA"
        )
    return cols


def reject_summary(
    con: duckdb.DuckDBPyConnection, stored: str, key_item: str
) -> tuple[int, int, dict[str, int], list[dict[str, str]]]:
    """(rows, rejected rows, rejected rows by reason, masked samples) of a stored file."""
    counts = con.execute(
        f"SELECT _reject, count(*) FROM {stored} GROUP BY _reject ORDER BY 2 DESC, 1"
    ).fetchall()
    total = sum(int(n) for _, n in counts)
    by_reason = {str(r): int(n) for r, n in counts if r is not None}
    rejected = sum(by_reason.values())
    samples: list[dict[str, str]] = []
    if rejected:
        samples = [
            {"reason": str(r), "key": mask_id(str(k) if k is not None else "")}
            for r, k in con.execute(
                f"SELECT _reject, {_q(key_item)} FROM {stored} WHERE _reject IS NOT NULL "
                f"LIMIT {MAX_REJECT_SAMPLES}"
            ).fetchall()
        ]
    return total, rejected, by_reason, samples
