"""A query's persons list (核对对象名单): its columns and its row checks, for node and client.

Columns are found by name, case-insensitive, first match per role (:data:`PERSON_HEADERS`):
the ID number, the name and the authorization reference are required; the household id is
optional (each person is then a household of their own). Other columns are ignored.

:func:`persons_sql` reads the rows once: each value trimmed (blank = missing), the ID number
normalised and checked by the one GB 11643 rule (:mod:`exchange_common.idnumber`), the name
normalised (:func:`~exchange_common.tables.sql.name_sql`: full-width to half-width, white
space collapsed), the household defaulting to the person's normalised ID number, and ``_reject``, the row's first
failing check: ``E_ID`` (missing or failing GB 11643), then ``E_AUTHORIZATION`` (no
authorization reference: 先授权、后核对, 浙江 四(一)1). The node refuses a whole query for one
such row; the client refuses to seal it, naming the lines.
"""

# SQL is assembled from quoted identifiers and literals only.
# ruff: noqa: S608

from __future__ import annotations

import datetime as dt

from exchange_common.errors import InputError
from exchange_common.idnumber import id_normalize_sql, id_valid_sql
from exchange_common.tables.sql import name_sql, quote_ident, text_sql

__all__ = ["PERSON_HEADERS", "REQUIRED_ROLES", "persons_columns", "persons_sql"]

#: Accepted headers of the persons list, by role (first match wins; compared case-insensitive).
PERSON_HEADERS: dict[str, tuple[str, ...]] = {
    "id_number": ("id_number", "身份证号", "公民身份号码", "身份证号码"),
    "name": ("name", "姓名"),
    "household_id": ("household_id", "户编号", "户号", "家庭编号"),
    "authorization": ("authorization", "authorization_ref", "授权编号", "授权书编号"),
}
#: Roles a persons list must have a column for.
REQUIRED_ROLES = ("id_number", "name", "authorization")


def persons_columns(columns: dict[str, str]) -> dict[str, tuple[str, str] | None]:
    """For each role of :data:`PERSON_HEADERS`, the table column (name, DuckDB type) that
    fills it, or None. Raises InputError ``E_SCHEMA`` naming the missing required columns."""
    lowered = {name.strip().lower(): (name, kind) for name, kind in columns.items()}
    chosen = {
        role: next((lowered[n] for n in names if n in lowered), None)
        for role, names in PERSON_HEADERS.items()
    }
    missing = [
        f"{role} ({' / '.join(PERSON_HEADERS[role])})"
        for role in REQUIRED_ROLES
        if chosen[role] is None
    ]
    if missing:
        raise InputError(
            f"the persons table has no column for {', '.join(missing)}", code="E_SCHEMA"
        )
    return chosen


def _text(column: tuple[str, str] | None) -> str:
    """SQL: the column as trimmed text, NULL when blank or absent."""
    return "CAST(NULL AS VARCHAR)" if column is None else text_sql(*column)


def persons_sql(
    chosen: dict[str, tuple[str, str] | None],
    source: str,
    *,
    today: dt.date,
    keep: tuple[str, ...] = (),
    require_authorization: bool = True,
) -> str:
    """The checked persons rows of relation ``source`` whose columns ``chosen`` names
    (:func:`persons_columns`): ``id_number`` (canonical GB 11643 text), ``name``,
    ``household_id``, ``authorization``, ``id_ok`` and ``_reject``; ``keep`` columns pass
    through first. ``today`` is the latest accepted birth date. With ``require_authorization``
    false a row without an authorization reference is not rejected (the node suspends such a
    query, 浙江 六(二), instead of refusing it)."""
    kept = "".join(f"{quote_ident(k)}, " for k in keep)
    cleaned = (
        f"SELECT {kept}{_text(chosen['id_number'])} AS raw_id, "
        f"{name_sql(_text(chosen['name']))} AS name, {_text(chosen['household_id'])} AS household_id, "
        f'{_text(chosen["authorization"])} AS "authorization" FROM {source}'
    )
    rows = (
        f"SELECT {kept}{id_normalize_sql('raw_id')} AS id_number, name, household_id, "
        f'"authorization" FROM ({cleaned})'
    )
    # The check is its own projection (not inside coalesce): DuckDB then computes its repeated
    # parts once. NULL (a blank ID) is invalid.
    checked = (
        f"SELECT {kept}id_number, name, coalesce(household_id, id_number) AS household_id, "
        f'"authorization", {id_valid_sql("id_number", today=today)} AS id_ok FROM ({rows})'
    )
    authorization = (
        "WHEN \"authorization\" IS NULL THEN 'E_AUTHORIZATION' " if require_authorization else ""
    )
    return (
        f"SELECT *, CASE WHEN id_ok IS NOT true THEN 'E_ID' "
        f"{authorization}END AS _reject FROM ({checked})"
    )
