"""Stored datasets (归集, 办法 第八–十条): validated, versioned and encrypted at rest.

A provider's ``data`` bundle for a catalog resource holds one table (CSV, UTF-8, header = item
names; or Parquet). :meth:`DatasetStore.ingest` checks it against the resource's items and
stores the valid rows as a new version:

- columns: every column must be an item of the resource (a typo must not drop data silently);
  the key item is required, items missing from the table are stored empty;
- rows: the key item and every ``required`` item must have a value; ``id_number`` items must
  pass GB 11643 (18 characters, birth date, MOD 11-2 check character, ``x`` = ``X``; stored
  upper-case); ``integer``/``decimal``/``date`` items must parse (dates as ``YYYY-MM-DD``,
  ``YYYY/MM/DD`` or ``YYYYMMDD``); ``code`` items must be one of their ``values``.
  A bad row is rejected with a reason code and its column; the rest are stored.

Versions are ``HOME/datasets/<RESOURCE>/<BUNDLE_ID>.parquet``, Parquet encrypted by DuckDB under
the node data key (decision 0003), recorded in the ``dataset_version`` table. A ``full`` version
replaces what came before; an ``increment`` adds rows to it. :meth:`DatasetStore.current_files`
lists the files that make up the current data: the latest full version and the increments after.

Ingest is idempotent per bundle: the file name and the unique ``bundle_id`` make a second
ingest of the same bundle return the first one's report.
"""

# SQL is assembled from quoted identifiers (_q) and literals (_lit) only. ruff: noqa: S608

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb
from sqlmodel import col, func, select

from exchange_server.catalog import Item, ItemType, Resource
from exchange_server.duck import KEY_NAME, connect, load_data_key
from exchange_server.node import Node
from exchange_server.store.models import DatasetVersion
from pki._fs import fsync_dir
from pki.errors import InputError
from pki.masking import mask_id, mask_text

__all__ = [
    "MODES",
    "DatasetStore",
    "IngestReport",
    "date_sql",
    "id_valid_sql",
    "parquet_source",
    "quote_ident",
    "quote_literal",
]

#: ``mode`` of a data push.
MODES = ("full", "increment")
#: At most this many rejected rows are described one by one (all are counted).
MAX_REJECT_SAMPLES = 20

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
#: GB 11643 check characters by weighted sum mod 11, as an SQL list (index + 1).
_CHECK_CHARS = "['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2']"
#: 17 ASCII digits and a digit or ``X``: GLOB is about twice as fast as a regular expression.
_ID_GLOB = "[0-9]" * 17 + "[0-9X]"
#: The 17 body digits in chunks of at most three, each looked up in a 1,000-entry table.
_CHUNKS = ((0, 3), (3, 6), (6, 9), (9, 12), (12, 15), (15, 17))
_MONTH_DAYS = "[31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]"


def quote_ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """A quoted SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


_q, _lit = quote_ident, quote_literal


def _weight_table(start: int, stop: int) -> str:
    """SQL for a constant list: for every value of digits ``start:stop`` (index value + 1),
    their weighted sum mod 11.

    Written as a lambda over ``range`` that DuckDB folds once per query: a list literal of the
    same 1,000 numbers costs about 10 ms of parsing in every statement that uses it.
    """
    width = stop - start
    terms = " + ".join(
        f"((v // {10 ** (width - 1 - k)}) % 10) * {_WEIGHTS[start + k]}" for k in range(width)
    )
    return f"list_transform(range({10**width}), lambda v: ({terms}) % 11)"


def _id_check(text: str, body: str) -> str:
    """SQL that is true when ``text`` is a valid GB 11643 number, false when it is not, NULL
    when ``text`` is NULL.

    ``body`` is ``TRY_CAST(left(text, 17) AS BIGINT)``: one string-to-number cast, then integer
    arithmetic and table lookups. Its value does not matter unless the GLOB establishes 17
    ASCII digits, so a permissive cast (``0x1F``, ``1e5``, ``1_0``) cannot let anything
    through; when the GLOB holds every term is non-NULL, so the result is never NULL for a
    non-NULL ``text``. The year test comes first on purpose: DuckDB computes a repeated
    subexpression once only if it occurs in the first operand of an AND.
    """
    terms = []
    for a, z in _CHUNKS:
        part = body if z == 17 else f"({body} // {10 ** (17 - z)})"
        if a > 0:
            part = f"({part} % {10 ** (z - a)})"
        terms.append(f"{_weight_table(a, z)}[{part} + 1]")
    ymd = f"(({body} // 1000) % 100000000)"
    y, m, d = f"({ymd} // 10000)", f"(({ymd} // 100) % 100)", f"({ymd} % 100)"
    leap = f"({y} % 4 = 0 AND ({y} % 100 <> 0 OR {y} % 400 = 0))"
    return (
        f"({y} >= 1880 AND {text} GLOB '{_ID_GLOB}' AND {m} BETWEEN 1 AND 12 AND {d} >= 1 "
        f"AND ({d} <= {_MONTH_DAYS}[{m}] OR ({m} = 2 AND {d} = 29 AND {leap})) "
        f"AND suffix({text}, {_CHECK_CHARS}[({' + '.join(terms)}) % 11 + 1]))"
    )


def id_valid_sql(expr: str) -> str:
    """SQL that is true when ``expr`` (trimmed, upper-cased text) is a valid GB 11643 number:
    17 digits and a check character (a digit or ``X``), a real birth date (digits 7-14, Feb 29
    only in leap years) from 1880 on, and the ISO 7064 MOD 11-2 check character.

    False for any other text, NULL for NULL. ``expr`` appears several times: pass a column.
    """
    return _id_check(expr, f"TRY_CAST(left({expr}, 17) AS BIGINT)")


def date_sql(expr: str) -> str:
    """SQL turning text ``expr`` into a DATE (YYYY-MM-DD, YYYY/MM/DD or YYYYMMDD), else NULL."""
    return (
        f"coalesce(TRY_CAST({expr} AS DATE), CAST(try_strptime({expr}, '%Y/%m/%d') AS DATE), "
        f"CAST(try_strptime({expr}, '%Y%m%d') AS DATE))"
    )


def parquet_source(files: Sequence[Path], *, valid_only: bool = True) -> str:
    """SQL relation over encrypted dataset ``files`` (the data key must be registered).

    ``valid_only`` (the default) gives the valid rows without the ``_reject`` column, which is
    what every reader but the ingest report wants.
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


def _typed(item: Item, v: str) -> tuple[str, str | None]:
    """(typed value expression over the trimmed text ``v``, failure condition over ``v`` and
    the typed column ``t`` -- literal ``{v}``/``{t}`` placeholders the caller replaces -- or
    None)."""
    if item.type is ItemType.ID_NUMBER:
        return f"upper({v})", "{t} IS NOT NULL AND NOT " + id_valid_sql("{t}")
    if item.type is ItemType.INTEGER:
        return f"TRY_CAST({v} AS BIGINT)", "{v} IS NOT NULL AND {t} IS NULL"
    if item.type is ItemType.DECIMAL:
        return f"TRY_CAST({v} AS DECIMAL(18,2))", "{v} IS NOT NULL AND {t} IS NULL"
    if item.type is ItemType.DATE:
        return date_sql(v), "{v} IS NOT NULL AND {t} IS NULL"
    if item.type is ItemType.CODE and item.values:
        allowed = ", ".join(_lit(x) for x in item.values)
        return v, "{t} IS NOT NULL AND {t} NOT IN (" + allowed + ")"
    return v, None


_REASON_NAMES = {
    ItemType.ID_NUMBER: "E_ID",
    ItemType.INTEGER: "E_INTEGER",
    ItemType.DECIMAL: "E_DECIMAL",
    ItemType.DATE: "E_DATE",
    ItemType.CODE: "E_CODE",
}


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

        Raises InputError ``E_MODE`` (mode not full/increment), ``E_SCHEMA`` (unknown or
        missing key column, unreadable table), ``E_ROWS`` (rows, but none valid). Nothing is
        stored when it raises. Idempotent per ``bundle_id``.
        """
        if mode not in MODES:
            raise InputError(f"mode {mode!r}: expected one of {list(MODES)}", code="E_MODE")
        done = self.by_bundle(bundle_id)
        started = dt.datetime.now(dt.UTC)
        target_rel = f"{resource.code}/{bundle_id}.parquet"
        target = self.root / target_rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        con = self.connect(work)
        try:
            src = _table_source(table)
            try:
                cols = [str(r[0]) for r in con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()]
            except duckdb.Error as e:
                raise InputError(
                    f"{resource.code}: the data table cannot be read",
                    code="E_SCHEMA",
                    detail=str(e).splitlines()[0][:200],
                ) from None
            unknown = [c for c in cols if resource.item(c) is None]
            if unknown:
                raise InputError(
                    f"{resource.code}: columns {unknown} are not items of the resource",
                    code="E_SCHEMA",
                )
            if resource.key_item not in cols:
                raise InputError(
                    f"{resource.code}: the key column {resource.key_item!r} is missing",
                    code="E_SCHEMA",
                )
            missing_required = [i.name for i in resource.items if i.required and i.name not in cols]
            if missing_required:
                raise InputError(
                    f"{resource.code}: required columns {missing_required} are missing",
                    code="E_SCHEMA",
                )
            # inner query: trimmed text (v_i) and typed value (t_i) of every item, computed once;
            # outer query: the typed values and the first failing check as the reject reason.
            inner, selects, checks = [], [], []
            for n, item in enumerate(resource.items):
                raw = _q(item.name) if item.name in cols else "CAST(NULL AS VARCHAR)"
                v, t = f"v{n}", f"t{n}"
                typed, bad = _typed(item, v)
                inner.append(f"nullif(trim({raw}), '') AS {v}")
                inner.append(f"{typed} AS {t}")
                selects.append(f"{t} AS {_q(item.name)}")
                if item.required or item.name == resource.key_item:
                    checks.append((f"{v} IS NULL", "E_REQUIRED", item.name))
                if bad is not None:
                    code = _REASON_NAMES.get(item.type, "E_VALUE")
                    checks.append((bad.replace("{v}", v).replace("{t}", t), code, item.name))
            reason = (
                "CASE "
                + " ".join(f"WHEN {c} THEN {_lit(code + ':' + name)}" for c, code, name in checks)
                + " END"
                if checks
                else "CAST(NULL AS VARCHAR)"
            )
            # DuckDB may inline the subquery; the lateral aliases keep each value computed once.
            typed_rows = f"(SELECT {', '.join(inner)} FROM {src})"
            # One pass over the table: every row, typed, with its reject reason (NULL = valid).
            # Rejected rows stay in the file (encrypted) for the provider's corrections; readers
            # see valid rows only (parquet_source).
            if done is None:
                con.execute("SET preserve_insertion_order = false")
                con.execute(
                    f"COPY (SELECT {', '.join(selects)}, {reason} AS _reject FROM {typed_rows}) "
                    f"TO {_lit(str(tmp))} (FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1, "
                    f"ENCRYPTION_CONFIG {{footer_key: {_lit(KEY_NAME)}}})"
                )
                stored = f"read_parquet({_lit(str(tmp))}, encryption_config = {{footer_key: {_lit(KEY_NAME)}}})"
            else:
                stored = parquet_source([self.root / done.file], valid_only=False)
            key = _q(resource.key_item)
            total, rejected = con.execute(
                f"SELECT count(*), count(_reject) FROM {stored}"
            ).fetchone() or (0, 0)
            if total and rejected == total:
                raise InputError(
                    f"{resource.code}: none of the {total} rows is valid", code="E_ROWS"
                )
            by_reason = dict(
                con.execute(
                    f"SELECT _reject, count(*) FROM {stored} WHERE _reject IS NOT NULL "
                    "GROUP BY _reject ORDER BY 2 DESC, 1"
                ).fetchall()
            )
            samples = [
                {"reason": str(r), "key": mask_id(str(k) if k is not None else "")}
                for r, k in con.execute(
                    f"SELECT _reject, {key} FROM {stored} WHERE _reject IS NOT NULL "
                    f"LIMIT {MAX_REJECT_SAMPLES}"
                ).fetchall()
            ]
        except duckdb.Error as e:
            tmp.unlink(missing_ok=True)
            raise InputError(
                f"{resource.code}: the data table could not be stored",
                code="E_SCHEMA",
                detail=mask_text(str(e).splitlines()[0])[:200],
            ) from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        finally:
            con.close()
        report = IngestReport(
            resource=resource.code,
            version=0,
            mode=mode,
            rows=int(total),
            stored=int(total) - int(rejected),
            rejected=int(rejected),
            rejects_by_reason={str(k): int(v) for k, v in by_reason.items()},
            samples=samples,
            catalog_version=catalog_version,
        )
        if done is not None:
            report.version = done.version
            return report
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        digest = _sha256(tmp)
        tmp.replace(target)
        fsync_dir(target.parent)
        with self.node.session() as s:
            again = s.exec(
                select(DatasetVersion).where(DatasetVersion.bundle_id == bundle_id)
            ).first()
            if again is not None:  # another process stored it meanwhile
                report.version = again.version
                return report
            last = s.exec(
                select(func.max(DatasetVersion.version)).where(
                    DatasetVersion.resource == resource.code
                )
            ).one()
            report.version = int(last or 0) + 1
            s.add(
                DatasetVersion(
                    resource=resource.code,
                    version=report.version,
                    bundle_id=bundle_id,
                    provider=provider,
                    mode=mode,
                    rows=report.stored,
                    rejected=report.rejected,
                    file=target_rel,
                    sha256=digest,
                    catalog_version=catalog_version,
                    created_at=now,
                )
            )
        report.seconds = round((dt.datetime.now(dt.UTC) - started).total_seconds(), 3)
        return report


def _table_source(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return f"(SELECT COLUMNS(*)::VARCHAR FROM read_parquet({_lit(str(path))}))"
    if suffix in {".csv", ".txt"}:
        return (
            f"read_csv({_lit(str(path))}, header = true, all_varchar = true, "
            "encoding = 'utf-8', strict_mode = true)"
        )
    raise InputError(f"{path.name}: a data table must be .csv or .parquet", code="E_SCHEMA")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
