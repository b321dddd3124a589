"""A provider's answer to a relay, checked before the node uses it (DESIGN §5b).

The provider answers a relayed query (``exchange-client respond``) with one table: the
resource's key item and some of the items the relay asked for, one row per record (a person
with no record has no row). :func:`store_answer` checks it with the same row rules as a data
push (:func:`~exchange_common.tables.rows.row_plan`, the shared validator) and refuses, rather
than filters, anything the relay did not ask for:

- ``E_SCHEMA``: the table cannot be read, lacks the key column, or has a column that is no
  item of the resource;
- ``E_NOT_ASKED``: a column the relay did not ask for, or a row naming a person not on the
  relay's list;
- ``E_ANSWER_VALUES``: a value not valid for its item type (counts by reason, no values).

A checked answer is written like a dataset version (encrypted Parquet with a ``_reject``
column, decision 0003), so the engine merges it exactly as it answers from a pushed dataset.
Nothing is left at the target when a check fails. Messages carry counts and item names, never
a person's data.
"""

# SQL is assembled from quoted identifiers and literals only.
# ruff: noqa: S608

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import duckdb

from exchange_common.catalog import Resource
from exchange_common.errors import PeerError
from exchange_common.fs import fsync_dir, fsync_file
from exchange_common.tables.rows import check_columns, reject_summary, row_plan
from exchange_common.tables.source import table_source, unreadable
from exchange_common.tables.sql import quote_ident, quote_literal
from exchange_server.data.duck import copy_encrypted, encrypted_scan

__all__ = ["AnswerReport", "store_answer"]

_q, _lit = quote_ident, quote_literal


@dataclass(frozen=True)
class AnswerReport:
    """What a checked answer holds: rows (records) and the persons they name. No personal data."""

    rows: int
    persons: int

    def as_json(self) -> dict[str, int]:
        """JSON-ready form (goes into the receipt)."""
        return {"rows": self.rows, "persons": self.persons}


def store_answer(
    con: duckdb.DuckDBPyConnection,
    resource: Resource,
    table: Path,
    target: Path,
    *,
    asked_items: Collection[str],
    persons: Path,
    today: dt.date,
) -> AnswerReport:
    """Check the answer ``table`` against ``resource`` and the relay; write it to ``target``.

    ``asked_items`` are the items the relay named (the key item is always allowed);
    ``persons`` is the query's persons list (encrypted Parquet with ``id_number``), and ``con``
    has the node data key registered. ``target`` appears complete (fsynced, renamed) or not
    at all. Raises InputError ``E_SCHEMA`` or ``E_ENCODING`` (an unreadable table), PeerError
    ``E_NOT_ASKED`` or ``E_ANSWER_VALUES`` as the module says.
    """
    src = table_source(table)
    columns = check_columns(con, resource, table, src)
    allowed = {resource.key_item, *asked_items}
    extra = [c for c in columns if c not in allowed]
    if extra:
        shown = [c[:40] for c in extra[:5]] + (["…"] if len(extra) > 5 else [])
        raise PeerError(
            f"{resource.code}: columns {shown} were not asked for by the relay", code="E_NOT_ASKED"
        )
    plan = row_plan(resource, columns, today)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    key = _q(resource.key_item)
    try:
        try:
            copy_encrypted(con, plan.sql(src), tmp)
        except duckdb.Error as e:
            raise unreadable(resource.code, table, e) from None
        stored = encrypted_scan(tmp)
        total, rejected, by_reason, _ = reject_summary(con, stored, resource.key_item)
        if rejected:
            reasons = ", ".join(f"{r} {n}" for r, n in sorted(by_reason.items()))
            raise PeerError(
                f"{resource.code}: {rejected} of {total} answer rows have invalid values "
                f"({reasons})",
                code="E_ANSWER_VALUES",
            )
        # The answer's keys are grouped once (records per person) and the persons they name
        # are counted from that grouping; only the distinct keys go through the anti join
        # against the list. The rows naming a person the relay did not ask about are still
        # counted as rows. (Joining every answer row to the de-duplicated list instead cost
        # about 1.6 times the CPU for 1,000,000 rows: bench/relay.py.)
        row = con.execute(
            f"WITH named AS (SELECT {key} AS id, count(*) AS n FROM {stored} GROUP BY {key}) "
            "SELECT (SELECT coalesce(sum(n), 0) FROM named "
            f"ANTI JOIN {encrypted_scan(persons)} p ON named.id = p.id_number), "
            "(SELECT count(id) FROM named)"
        ).fetchone()
        strangers, named = (int(row[0]), int(row[1])) if row else (0, 0)
        if strangers:
            raise PeerError(
                f"{resource.code}: {strangers} answer row(s) name persons the relay did not ask "
                "about",
                code="E_NOT_ASKED",
            )
        fsync_file(tmp)
        tmp.replace(target)
        fsync_dir(target.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return AnswerReport(rows=total, persons=named)
