"""Reading a pushed table strictly (CSV or Parquet), and the refusal of one that cannot be read.

The node reads every data push and persons list through :func:`table_source`, and the client
checks its tables through the same function before it seals them.
"""

# SQL is assembled from quoted literals only.
# ruff: noqa: S608

from __future__ import annotations

import codecs
import re
from pathlib import Path

import duckdb
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from exchange_common.errors import InputError
from exchange_common.masking import mask_text
from exchange_common.tables.sql import quote_literal

__all__ = [
    "CSV_DIALECT",
    "declared_rows",
    "describe",
    "table_source",
    "text_parquet",
    "unreadable",
]

_lit = quote_literal


#: ``read_csv`` options for every CSV the node reads (see :func:`table_source`).
CSV_DIALECT = (
    "header = true, encoding = 'utf-8', strict_mode = true, delim = ',', quote = '\"', "
    "escape = '\"', skip = 0, comment = ''"
)


def table_source(path: Path) -> str:
    """SQL relation over a pushed table: CSV as text, Parquet with its own column types.

    CSV is read as RFC 4180 (comma-separated, ``"``-quoted, ``""`` inside quotes), UTF-8 with
    or without BOM, the header on the first line, every row with as many fields as the header:
    a row with more or fewer, or an unbalanced quote, makes the table unreadable
    (:func:`unreadable`) instead of being guessed at. No line is ever skipped: DuckDB's sniffer
    would otherwise drop leading lines that do not fit and lines starting with ``#``.
    Raises InputError ``E_SCHEMA`` for any other suffix."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return f"read_parquet({_lit(str(path))})"
    if suffix in {".csv", ".txt"}:
        _check_first_line(path)
        return f"read_csv({_lit(str(path))}, all_varchar = true, {CSV_DIALECT})"
    raise InputError(f"{path.name}: a data table must be .csv or .parquet", code="E_SCHEMA")


def declared_rows(table: Path) -> int | None:
    """The rows a Parquet ``table`` declares in its footer, read without a single data page;
    None for a CSV (its rows are bounded by its bytes). A peer's Parquet file can hold 100,000,000
    identical rows in a few kilobytes: the caller bounds this before any work on the rows.
    Raises InputError ``E_SCHEMA`` when the footer cannot be read."""
    if table.suffix.lower() != ".parquet":
        return None
    try:
        return int(pq.ParquetFile(table).metadata.num_rows)
    except (OSError, pa.ArrowException) as e:
        detail = mask_text(str(e).splitlines()[0] if str(e) else type(e).__name__)[:200]
        raise InputError(
            f"{table.name}: the table cannot be read (not a Parquet file)",
            code="E_SCHEMA",
            detail=detail,
        ) from None


def text_parquet(table: Path, target: Path) -> None:
    """Write the CSV ``table`` to ``target`` as Parquet (zstd) exactly as :func:`table_source`
    reads it: the header's names, every column text, every cell unchanged, rows in file order.

    A Parquet table is read by the node without parsing CSV and travels at about a seventh of
    the size (decision 0007). Raises InputError as :func:`unreadable` says (or ``E_SCHEMA``
    from :func:`table_source`); ``target`` is then left incomplete or absent.
    """
    src = table_source(table)
    con = duckdb.connect(config={"autoinstall_known_extensions": False})
    try:
        con.execute("SET enable_progress_bar = false")
        con.execute(
            f"COPY (SELECT * FROM {src}) TO {_lit(str(target))} (FORMAT parquet, COMPRESSION zstd)"
        )
    except duckdb.Error as e:
        raise unreadable(table.stem, table, e) from None
    finally:
        con.close()


def _check_first_line(path: Path) -> None:
    """Refuse a CSV whose first line (after a BOM) is empty, or that is empty: DuckDB would take
    the next line, possibly a data row, as the header."""
    try:
        with path.open("rb") as fh:
            head = fh.read(4)
    except OSError:
        return  # DuckDB reports the unreadable file
    head = head.removeprefix(b"\xef\xbb\xbf")
    if not head:
        raise InputError(f"{path.name}: the table is empty (no header line)", code="E_SCHEMA")
    if head[:1] in (b"\r", b"\n"):
        raise InputError(
            f"{path.name}: line 1 is empty; the header must be on the first line",
            code="E_SCHEMA",
        )


def describe(con: duckdb.DuckDBPyConnection, what: str, table: Path, src: str) -> dict[str, str]:
    """The columns of ``src`` (name -> DuckDB type); :func:`unreadable` when DuckDB cannot
    read the table."""
    try:
        rows = con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()
    except duckdb.Error as e:
        raise unreadable(what, table, e) from None
    return {str(r[0]): str(r[1]) for r in rows}


def unreadable(what: str, table: Path, error: duckdb.Error) -> InputError:
    """The InputError for ``what``'s table DuckDB could not read.

    ``E_ENCODING`` when a CSV is not UTF-8 (checked here: DuckDB 1.5.5 reports bad bytes past
    its sniffing sample as an internal error), else ``E_SCHEMA``. The message (sent to the
    department) names the line of a CSV row that does not fit the header when DuckDB names one;
    the detail (local log only) is DuckDB's first line, path left out, digit runs masked.
    """
    if table.suffix.lower() != ".parquet":
        line = _first_non_utf8_line(table)
        if line is not None:
            return InputError(
                f"{what}: the table is not UTF-8 text (line {line}); save it as UTF-8",
                code="E_ENCODING",
            )
    first = str(error).splitlines()[0] if str(error) else type(error).__name__
    detail = mask_text(first.replace(str(table), table.name))[:200]
    message = f"{what}: the table cannot be read"
    if "Error when sniffing file" in first:
        message += (
            ": not a comma-separated table with a header (rows with different numbers of "
            "fields, or a quote not closed)"
        )
    elif m := re.search(r"CSV Error on Line: (\d+)", first):
        message += f": line {m.group(1)} does not match the header, or a quote is not closed"
    return InputError(message, code="E_SCHEMA", detail=detail)


def _first_non_utf8_line(path: Path) -> int | None:
    """The 1-based line of the first byte sequence that is not UTF-8, or None."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as e:
                    return line + chunk[: max(e.start, 0)].count(b"\n")
                line += chunk.count(b"\n")
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return line
    except OSError:
        return None
    return None
