"""The persons list of a query (核对对象名单): its columns, its checks, its normalised copy.

A query bundle carries one table (CSV, UTF-8, with a header; or Parquet) of the persons to
check. Its columns and row checks are the ones the client runs before sealing
(:mod:`exchange_common.tables.persons`).

:func:`prepare_persons` reads the table once: each value is trimmed (blank = missing), ID
numbers are normalised and checked by the one GB 11643 rule (:mod:`exchange_common.idnumber`:
``x`` = ``X``, full-width digits, 15-digit numbers converted; a region code that ever existed;
born from 1880 until ``today``), the household defaults to the person's normalised ID number. The normalised rows go straight into Parquet
encrypted under the node data key, with the check result beside them; a second, small read of
that file counts the invalid IDs and the missing authorizations. The caller decides what a
count means (the node refuses the whole query for one bad ID, 先授权、后核对 for one missing
authorization); a table with problems leaves no file behind.

Speed (2 cores): about 0.6 s per 1,000,000 persons from CSV, most of it CSV parsing and the
encrypted write. Reading the table and the checks are shared with the dataset ingest
(:mod:`exchange_server.data.datasets`), so both accept the same CSV and Parquet.
"""

# SQL is assembled from quoted identifiers and literals only.
# ruff: noqa: S608

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import duckdb

from exchange_common.idnumber import china_today
from exchange_common.masking import mask_id_numbers
from exchange_common.tables.persons import PERSON_HEADERS, persons_columns, persons_sql
from exchange_common.tables.source import describe, table_source, unreadable
from exchange_common.tables.sql import quote_literal
from exchange_server.data.duck import KEY_NAME, encrypted_scan
from exchange_server.store.audit import PersonRef, person_digest

__all__ = ["PERSON_HEADERS", "PersonsCheck", "audit_persons", "persons_columns", "prepare_persons"]


@dataclass(frozen=True)
class PersonsCheck:
    """What :func:`prepare_persons` found: rows, rows whose ID number is missing or fails
    GB 11643, rows without an authorization reference. Holds no personal data."""

    rows: int
    bad_ids: int
    unauthorized: int

    @property
    def ok(self) -> bool:
        """True when every row has a valid ID number and an authorization reference."""
        return self.bad_ids == 0 and self.unauthorized == 0


def prepare_persons(
    con: duckdb.DuckDBPyConnection,
    table: Path,
    target: Path,
    *,
    today: dt.date | None = None,
    keep_unauthorized: bool = False,
) -> PersonsCheck:
    """Read the persons ``table`` and write it normalised to ``target`` (Parquet encrypted
    under the data key registered on ``con``): columns ``id_number`` (canonical GB 11643 text,
    :func:`~exchange_common.idnumber.id_normalize_sql`), ``name``, ``household_id`` (the ID
    number when blank), ``authorization``. ``today`` (default: today in China) is the latest
    accepted birth date.

    Returns the counts; when any row has a bad ID or no authorization, ``target`` is removed
    before returning (with ``keep_unauthorized``, missing authorizations alone keep it: a
    suspended query, 浙江 六(二)). Raises InputError ``E_SCHEMA`` (unreadable table, wrong suffix, a required
    column missing) or ``E_ENCODING`` (a CSV that is not UTF-8); nothing is left at ``target``.
    """
    src = table_source(table)
    chosen = persons_columns(describe(con, "persons", table, src))
    checked = persons_sql(chosen, src, today=today or china_today())
    encryption = f"{{footer_key: {quote_literal(KEY_NAME)}}}"
    try:
        con.execute(
            f"COPY (SELECT * EXCLUDE (_reject) FROM ({checked})) TO {quote_literal(str(target))} "
            f"(FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1, "
            f"ENCRYPTION_CONFIG {encryption})"
        )
        counts = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE id_ok IS NOT true), "
            f'count(*) FILTER (WHERE "authorization" IS NULL) FROM {encrypted_scan(target)}'
        ).fetchone()
    except duckdb.Error as e:
        target.unlink(missing_ok=True)
        raise unreadable("persons", table, e) from None
    total, bad_ids, unauthorized = counts or (0, 0, 0)
    check = PersonsCheck(int(total), int(bad_ids), int(unauthorized))
    if check.bad_ids or (check.unauthorized and not keep_unauthorized):
        target.unlink(missing_ok=True)
    return check


def audit_persons(con: duckdb.DuckDBPyConnection, persons: Path, key: bytes) -> list[PersonRef]:
    """The persons of a prepared list as the audit trail keeps them, in file order: the keyed
    digest of each ID number (:func:`~exchange_server.store.audit.person_digest`, never the
    number) and the authorization reference with any ID number in it masked, cut to 64
    characters. ``con`` must have the data key registered."""
    rows = con.execute(
        f'SELECT id_number, "authorization" FROM {encrypted_scan(persons, row_numbers=True)} '
        "ORDER BY file_row_number"
    ).fetchall()
    return [
        (person_digest(key, str(number)), mask_id_numbers(str(auth))[:64] if auth else None)
        for number, auth in rows
    ]
