"""Stored datasets (归集, 办法 第八–十条): validated, versioned and encrypted at rest.

A provider's ``data`` bundle for a catalog resource holds one table (CSV, UTF-8, header = item
names; or Parquet). :meth:`DatasetStore.ingest` checks it against the resource's items and
stores the valid rows as a new version:

- columns: every column must be an item of the resource (a typo must not drop data silently);
  the key item and every ``required`` item must be there, other items missing from the table
  are stored empty;
- rows (text trimmed of spaces first; blank = missing): the key item and every ``required``
  item must have a value (``E_REQUIRED``); ``id_number`` items must pass GB 11643 as
  :mod:`exchange_common.idnumber` states it (check character, a region code that ever
  existed, a real birth date from 1880 until the day of the push in China; ``x`` = ``X``,
  15-digit numbers converted, stored canonical; ``E_ID``); ``integer``/``decimal``/``date`` items must
  parse (``E_INTEGER``/``E_DECIMAL``/``E_DATE``; dates as ``YYYY-MM-DD``, ``YYYY/MM/DD`` or
  ``YYYYMMDD``); ``code`` items must be one of their ``values`` (``E_CODE``). A bad row is
  rejected with the first failing reason and its column (``E_ID:公民身份号码``); the rest are
  stored. A Parquet column already of a fitting type (DATE, integer, DECIMAL) is taken as is.

One pass over the table types and checks every row and writes it, with a ``_reject`` column
(the reason; NULL = valid), into ``HOME/datasets/<RESOURCE>/<BUNDLE_ID>.<NONCE>.parquet``: Parquet
encrypted by DuckDB under the node data key (decision 0003), recorded in the ``dataset_version``
table. Readers see the valid rows only (:func:`parquet_source`). A ``full`` version replaces
what came before; an ``increment`` adds rows to it. :meth:`DatasetStore.current_files` lists
the files that make up the current data: the latest full version and the increments after.

Ingest is idempotent per bundle: ``bundle_id`` is unique in ``dataset_version``, so a second
ingest of a stored bundle returns the first one's report, and of two processes storing the same
bundle at once (each writes a file of its own) the one that records second removes its file.

Speed (2 cores, RS-SI-01, bench/compare.py): about 1.1 M rows/s from CSV, 1.6 M rows/s from
Parquet. DuckDB's CSV parsing and the encrypted Parquet writing take most of it; the GB 11643
check (normalise and check) costs about 0.6 µs of CPU per row.
"""

# SQL is assembled from quoted identifiers (_q) and literals (_lit) only; numbers pass through
# int() or are constants of this module.
# ruff: noqa: S608

from __future__ import annotations

import codecs
import datetime as dt
import hashlib
import os
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, func, select

from exchange_common.errors import InputError
from exchange_common.fs import fsync_dir
from exchange_common.idnumber import china_today, id_normalize_sql, id_valid_sql
from exchange_common.masking import mask_id, mask_text
from exchange_server.data.catalog import NUMERIC_TYPES, ItemType, Resource
from exchange_server.data.duck import KEY_NAME, connect, load_data_key, quote_ident, quote_literal
from exchange_server.node import Node
from exchange_server.store.models import DatasetVersion

__all__ = [
    "CSV_DIALECT",
    "MODES",
    "DatasetStore",
    "IngestReport",
    "clean_sql",
    "date_sql",
    "parquet_source",
    "quote_ident",
    "quote_literal",
    "table_source",
    "text_sql",
    "unreadable",
]

#: ``mode`` of a data push.
MODES = ("full", "increment")
#: At most this many rejected rows are described one by one (all are counted).
MAX_REJECT_SAMPLES = 20

_q, _lit = quote_ident, quote_literal


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


def parquet_source(files: Sequence[Path], *, valid_only: bool = True) -> str:
    """SQL relation over encrypted dataset ``files`` (the data key must be registered).

    ``valid_only`` (the default) gives the valid rows without the ``_reject`` column, which is
    what every reader but the ingest report wants: every item typed as the catalog says, the
    key item a valid, trimmed, upper-case GB 11643 number.
    """
    listed = ", ".join(_lit(str(f)) for f in files)
    scan = f"read_parquet([{listed}], encryption_config = {{footer_key: {_lit(KEY_NAME)}}})"
    if not valid_only:
        return scan
    return f"(SELECT * EXCLUDE (_reject) FROM {scan} WHERE _reject IS NULL)"


@dataclass
class IngestReport:
    """What an ingest stored and refused. Holds no personal data (IDs masked, no names)."""

    resource: str
    version: int
    mode: str
    rows: int
    stored: int
    rejected: int
    rejects_by_reason: dict[str, int] = field(default_factory=dict)
    samples: list[dict[str, str]] = field(default_factory=list)
    catalog_version: int = 0
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        """JSON-ready form (goes into the signed receipt)."""
        return asdict(self)


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
    raw = _q(name) if kind == "VARCHAR" else f"CAST({_q(name)} AS VARCHAR)"
    return clean_sql(raw)


@dataclass
class _Plan:
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

    def sql(self, source: str) -> str:
        reason = (
            "CASE " + " ".join(f"WHEN {c} THEN {_lit(r)}" for c, r in self.checks) + " END"
            if self.checks
            else "CAST(NULL AS VARCHAR)"
        )
        layer1 = f"SELECT {', '.join(self.values)} FROM {source}"
        layer2 = f"SELECT *, {', '.join(self.typed)} FROM ({layer1})"
        layer3 = f"SELECT *{''.join(', ' + o for o in self.oks)} FROM ({layer2})"
        return f"SELECT {', '.join(self.outputs)}, {reason} AS _reject FROM ({layer3})"


def _plan(resource: Resource, columns: dict[str, str], today: dt.date) -> _Plan:
    """The ingest query for a source with ``columns`` (name -> DuckDB type); ID numbers born
    after ``today`` are refused."""
    plan = _Plan()
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


@dataclass
class DatasetStore:
    """The datasets of one node home."""

    node: Node
    threads: int | None = None
    memory_limit: str | None = None

    @property
    def root(self) -> Path:
        """``HOME/datasets``."""
        return self.node.config.home / "datasets"

    def data_key(self) -> str:
        """The node data key (created on first use)."""
        return load_data_key(self.node.config.home)

    def connect(self, work: Path | None = None) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with the data key registered."""
        return connect(
            self.data_key(),
            threads=self.threads,
            memory_limit=self.memory_limit,
            temp_directory=work,
        )

    def versions(self, resource: str | None = None) -> list[DatasetVersion]:
        """Stored versions (of one resource, or all), oldest first."""
        with self.node.session(write=False) as s:
            q = select(DatasetVersion)
            if resource is not None:
                q = q.where(DatasetVersion.resource == resource)
            q = q.order_by(col(DatasetVersion.resource), col(DatasetVersion.version))
            return [v.model_copy() for v in s.exec(q)]

    def current_files(self, resource: str) -> list[Path]:
        """Files of the current data: the latest full version and every later increment.

        Empty when nothing was pushed for ``resource``.
        """
        versions = self.versions(resource)
        start = max((i for i, v in enumerate(versions) if v.mode == "full"), default=0)
        return [self.root / v.file for v in versions[start:]]

    def by_bundle(self, bundle_id: str) -> DatasetVersion | None:
        """The version a bundle stored, if any."""
        with self.node.session(write=False) as s:
            row = s.exec(
                select(DatasetVersion).where(DatasetVersion.bundle_id == bundle_id)
            ).first()
            return row.model_copy() if row else None

    def ingest(
        self,
        resource: Resource,
        table: Path,
        *,
        bundle_id: str,
        provider: str,
        mode: str,
        catalog_version: int,
        work: Path,
        now: dt.datetime,
    ) -> IngestReport:
        """Validate ``table`` against ``resource`` and store its valid rows as a new version.

        One pass reads the table, types and checks every row and writes the encrypted file;
        a second reads back only its ``_reject`` column for the report.

        Raises InputError ``E_MODE`` (mode not full/increment), ``E_SCHEMA`` (unknown or
        missing key or required column, unreadable table), ``E_ENCODING`` (a CSV that is not
        UTF-8), ``E_ROWS`` (rows, but none valid; or a ``full`` push without rows, which would
        empty the dataset: an empty ``increment`` is stored). Nothing is stored when it raises.
        Idempotent per ``bundle_id``: a second ingest of a stored bundle returns its report.
        """
        if mode not in MODES:
            raise InputError(f"mode {mode!r}: expected one of {list(MODES)}", code="E_MODE")
        started = time.perf_counter()
        done = self.by_bundle(bundle_id)
        # a name of its own per attempt: two processes storing one bundle at once never write
        # the same file, and the loser removes its own (below)
        target_rel = f"{resource.code}/{bundle_id}.{uuid.uuid4().hex[:12]}.parquet"
        target = self.root / target_rel
        tmp: Path | None = None
        con = self.connect(work)
        try:
            if done is not None:
                stored = parquet_source([self.root / done.file], valid_only=False)
            else:
                src = table_source(table)
                plan = _plan(resource, _columns(con, resource, table, src), china_today(now))
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
                con.execute("SET preserve_insertion_order = false")
                try:
                    con.execute(
                        f"COPY ({plan.sql(src)}) TO {_lit(str(tmp))} (FORMAT parquet, "
                        f"COMPRESSION zstd, COMPRESSION_LEVEL 1, PARQUET_VERSION v2, "
                        f"ENCRYPTION_CONFIG {{footer_key: {_lit(KEY_NAME)}}})"
                    )
                except duckdb.Error as e:
                    raise unreadable(resource.code, table, e) from None
                stored = (
                    f"read_parquet({_lit(str(tmp))}, "
                    f"encryption_config = {{footer_key: {_lit(KEY_NAME)}}})"
                )
            total, rejected, by_reason, samples = _report(con, stored, resource.key_item)
            if total and rejected == total and done is None:
                raise InputError(
                    f"{resource.code}: none of the {total} rows is valid", code="E_ROWS"
                )
            if not total and mode == "full" and done is None:
                raise InputError(
                    f"{resource.code}: a full push without rows would empty the dataset; "
                    "an empty increment is accepted",
                    code="E_ROWS",
                )
        except BaseException as e:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            if isinstance(e, duckdb.Error):
                raise InputError(
                    f"{resource.code}: the data table could not be stored",
                    code="E_SCHEMA",
                    detail=mask_text(str(e).splitlines()[0])[:200],
                ) from None
            raise
        finally:
            con.close()
        report = IngestReport(
            resource=resource.code,
            version=0,
            mode=mode,
            rows=total,
            stored=total - rejected,
            rejected=rejected,
            rejects_by_reason=by_reason,
            samples=samples,
            catalog_version=catalog_version,
        )
        if done is not None or tmp is None:
            report.version = done.version if done is not None else 0
            return report
        try:
            digest = _sync_and_hash(tmp)
            tmp.replace(target)
            fsync_dir(target.parent)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        # a failure here leaves at worst an unrecorded file, never a recorded one missing
        try:
            report.version, stored_now = self._record(
                resource, bundle_id, provider, mode, report, target_rel, digest, now
            )
        except _NotRecorded:
            target.unlink(missing_ok=True)  # certainly unrecorded: every insert was refused
            raise
        if not stored_now:  # another process stored this bundle meanwhile: keep its file
            target.unlink(missing_ok=True)
            fsync_dir(target.parent)
            return report
        report.seconds = round(time.perf_counter() - started, 3)
        return report

    def _record(
        self,
        resource: Resource,
        bundle_id: str,
        provider: str,
        mode: str,
        report: IngestReport,
        file: str,
        digest: str,
        now: dt.datetime,
    ) -> tuple[int, bool]:
        """Record the stored file as the next version of ``resource``: (version, True); or,
        when the bundle is already recorded, (its version, False).

        A concurrent writer (PostgreSQL runs two node processes' transactions side by side)
        can take the same version number or the same bundle first: the unique constraints
        refuse the second insert and it looks again, at most a few times.
        """
        for _ in range(5):
            try:
                with self.node.session() as s:
                    again = s.exec(
                        select(DatasetVersion).where(DatasetVersion.bundle_id == bundle_id)
                    ).first()
                    if again is not None:
                        return again.version, False
                    last = s.exec(
                        select(func.max(DatasetVersion.version)).where(
                            DatasetVersion.resource == resource.code
                        )
                    ).one()
                    version = int(last or 0) + 1
                    s.add(
                        DatasetVersion(
                            resource=resource.code,
                            version=version,
                            bundle_id=bundle_id,
                            provider=provider,
                            mode=mode,
                            rows=report.stored,
                            rejected=report.rejected,
                            file=file,
                            sha256=digest,
                            catalog_version=report.catalog_version,
                            created_at=now,
                        )
                    )
                return version, True
            except IntegrityError:
                continue
        raise _NotRecorded(f"{resource.code}: could not record the dataset version")


class _NotRecorded(RuntimeError):
    """Every attempt to record a dataset version was refused by a unique constraint."""


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


def _columns(
    con: duckdb.DuckDBPyConnection, resource: Resource, table: Path, src: str
) -> dict[str, str]:
    """The table's columns (name -> DuckDB type), checked against the resource's items."""
    try:
        rows = con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()
    except duckdb.Error as e:
        raise unreadable(resource.code, table, e) from None
    cols = {str(r[0]): str(r[1]) for r in rows}
    unknown = [c for c in cols if resource.item(c) is None]
    if unknown:
        # Header names are echoed to the sender (a typo is found at once), except when the
        # first line looks like data: a table without a header makes its first row (ID
        # number, name, ...) the "header", and none of that may go into a receipt or a log.
        if resource.key_item not in cols or any(mask_text(c) != c for c in unknown):
            raise InputError(
                f"{resource.code}: the first line is not a header of item names (no column "
                f"{resource.key_item!r}; {len(unknown)} of {len(cols)} columns unknown)",
                code="E_SCHEMA",
            )
        shown = [c[:40] for c in unknown[:5]] + (["…"] if len(unknown) > 5 else [])
        raise InputError(
            f"{resource.code}: columns {shown} are not items of the resource", code="E_SCHEMA"
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


def _report(
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


def _sync_and_hash(path: Path) -> str:
    """fsync ``path`` and return its SHA-256 (hex)."""
    h = hashlib.sha256()
    with path.open("rb+") as fh:
        os.fsync(fh.fileno())
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
