"""A provider's answer to a relay, checked and merged in one pass (DESIGN §5b, decision 0007).

The provider answers a relayed query (``exchange-client respond``) with one table: the
resource's key item and some of the items the relay asked for, one row per record (a person
with no record has no row). :func:`merge_answer` checks it with the same row rules as a data
push (:func:`~exchange_common.tables.rows.row_plan`, the shared validator) and refuses, rather
than filters, anything the relay did not ask for:

- ``E_SCHEMA``: the table cannot be read, lacks the key column, or has a column that is no
  item of the resource;
- ``E_NOT_ASKED``: a column the relay did not ask for, or a row naming a person not on the
  relay's list;
- ``E_ANSWER_VALUES``: a value not valid for its item type (counts by reason, no values).

The answer is read once: each row is typed and checked, and its key looked up in the query's
persons list (the engine's ``persons`` table, :class:`~exchange_server.data.engine.Comparison`).
A key found there is a number the node checked when the query arrived, so only the keys not on
the list go through GB 11643 (an invalid one is a value error, a valid one a person not asked
about). The checked rows then become the engine's records, and the engine writes the result
files exactly as for a hosted resource: a relayed answer reaches the requester in the shape of
a hosted one. Messages carry counts and item names, never a person's data.
"""

# SQL is assembled from quoted identifiers and literals only.
# ruff: noqa: S608

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from exchange_common.catalog import Resource
from exchange_common.errors import PeerError
from exchange_common.idnumber import id_valid_sql
from exchange_common.tables.rows import check_columns, row_plan
from exchange_common.tables.source import table_source, unreadable
from exchange_common.tables.sql import quote_ident
from exchange_server.data.engine import (
    Comparison,
    MatchResult,
    OutputFormat,
    TimeRange,
    engine_error,
    time_where,
)

__all__ = ["AnswerReport", "merge_answer"]

_q = quote_ident
_STRANGER = "not asked"


@dataclass(frozen=True)
class AnswerReport:
    """What a checked answer holds: rows (records) and the persons they name. No personal data."""

    rows: int
    persons: int

    def as_json(self) -> dict[str, int]:
        """JSON-ready form (goes into the receipt)."""
        return {"rows": self.rows, "persons": self.persons}


def merge_answer(
    con: duckdb.DuckDBPyConnection,
    resource: Resource,
    table: Path,
    persons: Path,
    out_dir: Path,
    *,
    items: Sequence[str],
    time_range: TimeRange | str | None,
    fmt: OutputFormat,
    today: dt.date,
    threads: int | None = None,
) -> tuple[AnswerReport, MatchResult]:
    """Check the answer ``table`` against ``resource`` and the relay, and write the requester's
    result files for it into ``out_dir`` (:meth:`Comparison.finish`).

    ``items`` are the items the relay asked for (the key item is always allowed), which are the
    items the requester may see; ``persons`` is the query's persons list (encrypted Parquet with
    ``id_number``, ``name``, ``household_id``), and ``con`` has the node data key registered.
    On a refusal the files in ``out_dir`` are incomplete: the caller removes the folder.
    Raises InputError ``E_SCHEMA`` or ``E_ENCODING`` (an unreadable table), ``E_ENGINE``,
    PeerError ``E_NOT_ASKED`` or ``E_ANSWER_VALUES`` as the module says.
    """
    src = table_source(table)
    columns = check_columns(con, resource, table, src)
    allowed = {resource.key_item, *items}
    extra = [c for c in columns if c not in allowed]
    if extra:
        shown = [c[:40] for c in extra[:5]] + (["…"] if len(extra) > 5 else [])
        raise PeerError(
            f"{resource.code}: columns {shown} were not asked for by the relay", code="E_NOT_ASKED"
        )
    comparison = Comparison.of(resource, items, out_dir, time_range, fmt)
    plan = row_plan(resource, columns, today, key_by_list=True)
    key = _q(resource.key_item)
    try:
        con.execute("SET preserve_insertion_order = false")
        comparison.load_persons(con, persons, encrypted=True, threads=threads)
        try:
            con.execute(
                f"CREATE TEMP TABLE answer AS SELECT p.row_no AS _pid, a.* "
                f"FROM ({plan.sql(src)}) a LEFT JOIN persons p ON a.{key} = p.id_number"
            )
        except duckdb.Error as e:
            raise unreadable(resource.code, table, e) from None
        # one row per outcome: a value error (the first failing check), a key not on the list
        # (GB 11643 decides: an invalid number is a value error), or NULL (a good row)
        rows = con.execute(
            "SELECT coalesce(_reject, CASE WHEN _pid IS NULL THEN CASE WHEN "
            f"{id_valid_sql(key, today=today)} THEN '{_STRANGER}' "
            f"ELSE 'E_ID:{resource.key_item}' END END) AS why, count(*), count(DISTINCT _pid) "
            "FROM answer GROUP BY why"
        ).fetchall()
        total = sum(int(n) for _, n, _ in rows)
        by_reason = {str(w): int(n) for w, n, _ in rows if w is not None and w != _STRANGER}
        strangers = sum(int(n) for w, n, _ in rows if w == _STRANGER)
        named = sum(int(d) for w, _, d in rows if w is None)
        if by_reason:
            reasons = ", ".join(f"{r} {n}" for r, n in sorted(by_reason.items()))
            raise PeerError(
                f"{resource.code}: {sum(by_reason.values())} of {total} answer rows have "
                f"invalid values ({reasons})",
                code="E_ANSWER_VALUES",
            )
        if strangers:
            raise PeerError(
                f"{resource.code}: {strangers} answer row(s) name persons the relay did not ask "
                "about",
                code="E_NOT_ASKED",
            )
        comparison.stage("check")
        date = _q(resource.time_item) if resource.time_item else "CAST(NULL AS DATE)"
        selected = "".join(f", {_q(n)}" for n in comparison.visible)
        records = (
            f"SELECT * FROM (SELECT _pid, {date} AS _date{selected} FROM answer) a "
            f"{time_where(comparison.tr, 'a._date')}"
        )
        result = comparison.finish(con, records)
    except duckdb.Error as e:
        raise engine_error(e) from None
    return AnswerReport(rows=total, persons=named), result
