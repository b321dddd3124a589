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

# SQL is assembled from quoted identifiers and literals only; numbers pass through
# int() or are constants of this module.
# ruff: noqa: S608

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, func, select

from exchange_common.catalog import Resource
from exchange_common.errors import InputError
from exchange_common.fs import fsync_dir, fsync_file, sha256_file
from exchange_common.idnumber import china_today
from exchange_common.masking import mask_text, peer_token
from exchange_common.tables.rows import check_columns, reject_summary, row_plan
from exchange_common.tables.source import table_source, unreadable
from exchange_server.data.duck import (
    connect,
    copy_encrypted,
    encrypted_scan,
    load_data_key,
)
from exchange_server.node import Node
from exchange_server.store.models import DatasetVersion

__all__ = ["MODES", "DatasetStore", "IngestReport", "parquet_source"]

#: ``mode`` of a data push.
MODES = ("full", "increment")


def parquet_source(files: Sequence[Path], *, valid_only: bool = True) -> str:
    """SQL relation over encrypted dataset ``files`` (the data key must be registered).

    ``valid_only`` (the default) gives the valid rows without the ``_reject`` column, which is
    what every reader but the ingest report wants: every item typed as the catalog says, the
    key item a valid, trimmed, upper-case GB 11643 number.
    """
    scan = encrypted_scan(files)
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
            raise InputError(
                f"mode {peer_token(mode)}: expected one of {list(MODES)}", code="E_MODE"
            )
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
                plan = row_plan(
                    resource, check_columns(con, resource, table, src), china_today(now)
                )
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
                con.execute("SET preserve_insertion_order = false")
                try:
                    copy_encrypted(con, plan.sql(src), tmp)
                except duckdb.Error as e:
                    raise unreadable(resource.code, table, e) from None
                stored = encrypted_scan(tmp)
            total, rejected, by_reason, samples = reject_summary(con, stored, resource.key_item)
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


def _sync_and_hash(path: Path) -> str:
    """fsync ``path`` and return its SHA-256 (hex)."""
    fsync_file(path)
    return sha256_file(path)
