"""SQL pieces every table check is built from: quoting, trimming, dates.

Everything a table check puts into SQL goes through :func:`quote_ident` and
:func:`quote_literal`, or is a constant of these modules.
"""

from __future__ import annotations

__all__ = ["clean_sql", "date_sql", "name_sql", "quote_ident", "quote_literal", "text_sql"]


def quote_ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """A quoted SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def clean_sql(raw: str) -> str:
    """SQL: text ``raw`` without leading and trailing spaces, NULL when that leaves nothing.

    ``trim`` copies every value; testing for a space at either end first is ten times cheaper.
    """
    return (
        f"CASE WHEN prefix({raw}, ' ') OR suffix({raw}, ' ') THEN nullif(trim({raw}), '') "
        f"ELSE nullif({raw}, '') END"
    )


def text_sql(name: str, kind: str) -> str:
    """SQL: column ``name`` of DuckDB type ``kind`` as :func:`clean_sql` text (trimmed, NULL
    when blank)."""
    raw = quote_ident(name) if kind == "VARCHAR" else f"CAST({quote_ident(name)} AS VARCHAR)"
    return clean_sql(raw)


def date_sql(expr: str) -> str:
    """SQL turning text ``expr`` into a DATE, else NULL.

    Exactly ``YYYY-MM-DD``, ``YYYY/MM/DD`` or ``YYYYMMDD`` with a real calendar day from year 1
    on (DuckDB reads year 0000 as 1 BC): a GLOB
    fixes the shape first, because DuckDB's own cast also takes ``2024-1-2`` and ignores what
    follows a date (``2024-01-02X``, ``2024-01-02 10:00``). ``expr`` appears several times:
    pass a column.
    """
    d = "[0-9]"
    return (
        f"CASE WHEN prefix({expr}, '0000') THEN NULL "
        f"WHEN {expr} GLOB '{d * 4}-{d * 2}-{d * 2}' THEN TRY_CAST({expr} AS DATE) "
        f"WHEN {expr} GLOB '{d * 4}/{d * 2}/{d * 2}' "
        f"THEN TRY_CAST(replace({expr}, '/', '-') AS DATE) "
        f"WHEN {expr} GLOB '{d * 8}' "
        f"THEN TRY_CAST(concat_ws('-', {expr}[1:4], {expr}[5:6], {expr}[7:8]) AS DATE) END"
    )


#: Full-width ASCII (U+FF01-U+FF5E) and the ideographic space, and their half-width forms.
_FULL_WIDTH = "".join(chr(c) for c in range(0xFF01, 0xFF5F)) + "\u3000"
_HALF_WIDTH = "".join(chr(c) for c in range(0x21, 0x7F)) + " "
#: A regular-expression class matching any character of :data:`_FULL_WIDTH`.
_FULL_WIDTH_CLASS = f"[{chr(0xFF01)}-{chr(0xFF5E)}{chr(0x3000)}]"


def name_sql(expr: str) -> str:
    """SQL: a person's name as node and client keep it: full-width letters, digits and
    punctuation made half-width, the ideographic space a space, runs of white space one space,
    trimmed; NULL when that leaves nothing. Chinese characters are kept as they are."""
    # translate() with the 95-character map costs ~7 µs a name in DuckDB: run it only on the
    # few names holding a full-width character (found by one regular-expression class)
    half = (
        f"CASE WHEN regexp_matches({expr}, {quote_literal(_FULL_WIDTH_CLASS)}) "
        f"THEN translate({expr}, {quote_literal(_FULL_WIDTH)}, {quote_literal(_HALF_WIDTH)}) "
        f"ELSE {expr} END"
    )
    return f"nullif(trim(regexp_replace({half}, '\\s+', ' ', 'g')), '')"
