"""Tabular files in and out: read and validate a table before ``push``, convert after ``pull``.

Reading (push): CSV (UTF-8 with or without BOM, or GB18030/GBK: strict UTF-8 is tried first,
else GB18030; ``encoding=`` overrides), XLSX (first sheet, read-only mode) and Parquet. Rows
are streamed: only the list of problems (capped) is kept in memory.

Validation (kinds ``query`` and ``data``) is the node's own check
(:func:`exchange_common.tables.check.check_table`): the table is transcoded to the UTF-8 CSV
that will be sealed (every column kept, header as given, cells as given), then checked by the
same DuckDB SQL the node runs on arrival — a query's persons list (ID number, name and
authorization columns; valid GB 11643 numbers, an authorization reference per person), a data
push against its catalog resource (columns, key item, item types, code lists, dates, ID
numbers), or, without a catalog, its ID-number columns. Problems name the line of the original
file and the node's reason code, with the ID number masked.

Writing (pull): a UTF-8 CSV member becomes CSV UTF-8 with BOM (Excel), GB18030 CSV, XLSX or
Parquet (all columns as text, so ID numbers keep every digit).

Errors are :class:`~exchange_common.errors.InputError` with codes ``E_ENCODING``, ``E_SCHEMA``
(columns that do not fit, as the node says it), ``E_COLUMNS`` (an empty table), ``E_FORMAT``
(unreadable file) and ``E_ROWS`` (the caller's decision, see :func:`validate_table`).
No message or report holds a full ID number or name.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from exchange_common.catalog import Resource
from exchange_common.errors import InputError
from exchange_common.tables.check import RowProblem, check_table
from exchange_common.tables.check import TableCheck as ValidationReport
from exchange_common.tables.formulas import spreadsheet_safe

__all__ = [
    "OUTPUT_FORMATS",
    "TABULAR_SUFFIXES",
    "RowProblem",
    "ValidationReport",
    "convert_csv",
    "read_table",
    "validate_table",
]

TABULAR_SUFFIXES = frozenset({".csv", ".xlsx", ".parquet"})
#: ``pull --format`` values.
OUTPUT_FORMATS = ("csv", "csv-gb18030", "xlsx", "parquet")
_CHUNK = 1 << 20
_BATCH = 4096


# -- reading ----------------------------------------------------------------------------------


def _is_utf8(path: Path) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    try:
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(_CHUNK), b""):
                decoder.decode(block)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def detect_encoding(path: Path, encoding: str | None = None) -> str:
    """The codec to read a CSV with: ``encoding`` if given (checked), else utf-8-sig or gb18030."""
    if encoding is not None:
        try:
            name = codecs.lookup(encoding).name
        except LookupError as e:
            raise InputError(f"unknown encoding {encoding!r}", code="E_ENCODING") from e
        return "utf-8-sig" if name == "utf-8" else name
    return "utf-8-sig" if _is_utf8(path) else "gb18030"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime) and value.time() == dt.time():
        return value.date().isoformat()
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    return str(value)


def _read_csv(path: Path, encoding: str) -> Iterator[tuple[int, list[str]]]:
    try:
        with path.open(encoding=encoding, errors="strict", newline="") as fh:
            reader = csv.reader(fh)
            for row in reader:
                yield reader.line_num, row
    except UnicodeDecodeError as e:
        raise InputError(
            f"the file is not valid {encoding} text (byte {e.start} of a block): "
            "give the right --encoding (utf-8, gb18030, gbk)",
            code="E_ENCODING",
        ) from e
    except csv.Error as e:
        raise InputError(f"malformed CSV: {e}", code="E_FORMAT") from e


def _read_xlsx(path: Path) -> Iterator[tuple[int, list[str]]]:
    import openpyxl  # type: ignore[import-untyped]

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as e:  # openpyxl raises many kinds (zipfile, KeyError, XML)
        raise InputError(
            f"not a readable XLSX workbook: {type(e).__name__}", code="E_FORMAT"
        ) from e
    try:
        ws = wb.worksheets[0]
        for number, row in enumerate(ws.iter_rows(values_only=True), start=1):
            yield number, [_cell(v) for v in row]
    finally:
        wb.close()


def _read_parquet(path: Path) -> Iterator[tuple[int, list[str]]]:
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises ArrowInvalid, OSError, ...
        raise InputError(f"not a readable Parquet file: {type(e).__name__}", code="E_FORMAT") from e
    yield 1, list(pf.schema_arrow.names)
    line = 1
    for batch in pf.iter_batches(batch_size=_BATCH):
        columns = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
        for values in zip(*columns, strict=True):
            line += 1
            yield line, [_cell(v) for v in values]


def read_table(
    path: Path, *, encoding: str | None = None
) -> tuple[list[str], Iterator[tuple[int, list[str]]], str | None]:
    """Open a table: (header, iterator of (line, cells), CSV encoding used or None).

    Lines count from the header (line 1); entirely empty rows are skipped.
    """
    suffix = path.suffix.lower()
    if not path.is_file():
        raise InputError(f"file not found: {path}", code="E_NOT_FOUND")
    used: str | None = None
    if suffix == ".csv":
        used = detect_encoding(path, encoding)
        rows = _read_csv(path, used)
    elif suffix == ".xlsx":
        rows = _read_xlsx(path)
    elif suffix == ".parquet":
        rows = _read_parquet(path)
    else:
        raise InputError(f"not a table file ({suffix or 'no suffix'})", code="E_FORMAT")
    for _line, header in rows:
        if any(c.strip() for c in header):
            body = ((n, r) for n, r in rows if any(c.strip() for c in r))
            return [h.strip().lstrip("\ufeff") for h in header], body, used
    raise InputError("the table is empty: no header row", code="E_COLUMNS")


def validate_table(
    path: Path,
    kind: str,
    out: Path,
    *,
    encoding: str | None = None,
    today: dt.date,
    resource: Resource | None = None,
    require_authorization: bool = True,
) -> ValidationReport:
    """Check ``path`` for a push of ``kind`` as the node will, and write the valid rows to
    ``out`` (UTF-8 CSV, header and cells as given).

    ``resource`` is the catalog resource of a data push (None: only ID-number columns are
    checked). Raises :class:`InputError` ``E_SCHEMA`` (columns the node would refuse),
    ``E_COLUMNS`` (no header), ``E_ENCODING`` or ``E_FORMAT``. Invalid rows do not raise: they
    are in the report, and the caller decides (refuse with ``E_ROWS``, or send only the valid
    rows with ``--valid-only``). A row with more non-empty cells than the header is reported
    as ``ROW_CELLS`` and left out of the check (the node could not read it).
    """
    header, rows, used = read_table(path, encoding=encoding)
    raw = out.with_name(f".{out.name}.all.csv")
    lines = array("L")
    cells_problems: list[RowProblem] = []
    width = len(header)
    try:
        with raw.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            for line, cells in rows:
                if len(cells) > width and any(c.strip() for c in cells[width:]):
                    cells_problems.append(RowProblem(line, "ROW_CELLS", ""))
                    continue
                writer.writerow((cells + [""] * width)[:width])
                lines.append(line)
        check = check_table(
            raw,
            kind=kind,
            today=today,
            resource=resource,
            lines=lines,
            valid_out=out,
            require_authorization=require_authorization,
        )
        if not check.invalid:  # every row valid: what was written is what is sealed
            raw.replace(out)
    finally:
        raw.unlink(missing_ok=True)
    check.encoding = used
    for problem in cells_problems:
        check.rows += 1
        check.add(problem)
    check.problems.sort(key=lambda p: p.line)
    return check


# -- writing ----------------------------------------------------------------------------------


def _write_xlsx(header: list[str], rows: Iterator[tuple[int, list[str]]], out: Path) -> None:
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell  # type: ignore[import-untyped]

    wb = Workbook(write_only=True)
    ws = wb.create_sheet()

    def text_cells(values: list[str]) -> list[Any]:
        cells = []
        for v in values:
            c = WriteOnlyCell(ws, value=v)
            c.data_type = "s"  # never a formula, never a number: IDs keep every digit
            cells.append(c)
        return cells

    ws.append(text_cells(header))
    for _line, cells in rows:
        ws.append(text_cells(cells))
    wb.save(out)


def _write_parquet(header: list[str], rows: Iterator[tuple[int, list[str]]], out: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = [h or f"column_{i + 1}" for i, h in enumerate(header)]
    schema = pa.schema([(n, pa.string()) for n in names])
    width = len(names)
    with pq.ParquetWriter(out, schema) as writer:
        batch: list[list[str]] = []

        def flush() -> None:
            cols = [[r[i] for r in batch] for i in range(width)]
            writer.write_table(
                pa.Table.from_arrays([pa.array(c, pa.string()) for c in cols], schema=schema)
            )
            batch.clear()

        for _line, cells in rows:
            batch.append((cells + [""] * width)[:width])
            if len(batch) >= _BATCH:
                flush()
        if batch:
            flush()


def convert_csv(path: Path, fmt: str) -> Path:
    """Rewrite a CSV file as ``fmt`` (see :data:`OUTPUT_FORMATS`); return the new path.

    ``csv`` (UTF-8 with BOM) and ``csv-gb18030`` keep the name; ``xlsx`` and ``parquet``
    replace the ``.csv`` file by ``<stem>.xlsx`` / ``<stem>.parquet``.
    """
    if fmt not in OUTPUT_FORMATS:
        raise InputError(
            f"unknown format {fmt!r}: choose one of {', '.join(OUTPUT_FORMATS)}", code="E_USAGE"
        )
    header, rows, _ = read_table(path)
    suffix = {"xlsx": ".xlsx", "parquet": ".parquet"}.get(fmt, ".csv")
    target = path.with_suffix(suffix)
    tmp = path.with_name(f".{path.name}.{fmt}.tmp")
    try:
        if fmt in ("csv", "csv-gb18030"):
            enc = "utf-8-sig" if fmt == "csv" else "gb18030"
            # for spreadsheets: text they would run as a formula is neutralised (formulas.py)
            with tmp.open("w", encoding=enc, newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow([spreadsheet_safe(h) for h in header])
                for _line, cells in rows:
                    writer.writerow([spreadsheet_safe(c) for c in cells])
        elif fmt == "xlsx":
            _write_xlsx(header, rows, tmp)
        else:
            _write_parquet(header, rows, tmp)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    if target != path:
        path.unlink()
    return target
