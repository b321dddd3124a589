"""State-store tables (sqlmodel). The schema is owned by the alembic migrations beside this file.

Times are stored as timezone-aware UTC. Department codes, bundle ids and certificate serials are
plain strings here; the typed ``NewType`` wrappers live at the module boundaries.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import BigInteger, Column, DateTime, UniqueConstraint
from sqlmodel import Field, SQLModel

__all__ = [
    "AuditEvent",
    "BundleState",
    "CalendarYear",
    "DatasetVersion",
    "Department",
    "DepartmentNetwork",
    "DepartmentSSHKey",
    "DeptState",
    "SeenBundle",
    "Upload",
    "as_utc",
]


def as_utc(when: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes for UTC columns; make every value aware UTC."""
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


def _utc_column(nullable: bool = False) -> Column[dt.datetime]:
    return Column(DateTime(timezone=True), nullable=nullable)


class DeptState(StrEnum):
    """Whether a department may log in."""

    ACTIVE = "active"
    DISABLED = "disabled"


class Department(SQLModel, table=True):
    """A registered department (or peer node): who may connect, from where, with which keys."""

    __tablename__ = "department"

    code: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=200)
    cert_pem: str
    cert_fingerprint: str = Field(max_length=64, index=True)
    cert_serial: str = Field(max_length=64)
    state: str = Field(default=DeptState.ACTIVE.value, max_length=16)
    quota_bytes: int = Field(default=10 * 1024**3, sa_type=BigInteger)
    created_at: dt.datetime = Field(sa_column=_utc_column())
    updated_at: dt.datetime = Field(sa_column=_utc_column())


class DepartmentNetwork(SQLModel, table=True):
    """One registered address or CIDR network of a department (部省 第五条)."""

    __tablename__ = "department_network"
    __table_args__ = (UniqueConstraint("dept_code", "cidr"),)

    id: int | None = Field(default=None, primary_key=True)
    dept_code: str = Field(foreign_key="department.code", index=True, max_length=32)
    cidr: str = Field(max_length=64)


class DepartmentSSHKey(SQLModel, table=True):
    """An SSH public key a department may log in with (OpenSSH ``authorized_keys`` line)."""

    __tablename__ = "department_ssh_key"
    __table_args__ = (UniqueConstraint("fingerprint"),)

    id: int | None = Field(default=None, primary_key=True)
    dept_code: str = Field(foreign_key="department.code", index=True, max_length=32)
    public_key: str
    fingerprint: str = Field(max_length=128)
    added_at: dt.datetime = Field(sa_column=_utc_column())


class BundleState(StrEnum):
    """An upload's state; every transition is decided in
    :mod:`exchange_server.pipeline.decisions` (received -> accepted|rejected; accepted ->
    rejected|routed|done)."""

    RECEIVED = "received"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    ROUTED = "routed"
    DONE = "done"


class Upload(SQLModel, table=True):
    """One file that arrived (SFTP upload or drop folder) and its way through the pipeline."""

    __tablename__ = "upload"

    id: str = Field(primary_key=True, max_length=36)
    dept_code: str = Field(index=True, max_length=32)
    source: str = Field(max_length=16)
    remote_addr: str | None = Field(default=None, max_length=64)
    file_name: str = Field(max_length=255)
    size: int = Field(sa_type=BigInteger)
    sha256: str | None = Field(default=None, max_length=64)
    state: str = Field(default=BundleState.RECEIVED.value, max_length=16, index=True)
    bundle_id: str | None = Field(default=None, max_length=36, index=True)
    kind: str | None = Field(default=None, max_length=32)
    reason_code: str | None = Field(default=None, max_length=32)
    reason_detail: str | None = None
    receipt_name: str | None = Field(default=None, max_length=255)
    received_at: dt.datetime = Field(sa_column=_utc_column())
    updated_at: dt.datetime = Field(sa_column=_utc_column())


class SeenBundle(SQLModel, table=True):
    """Bundle ids the node has accepted: the primary key makes replay impossible, even with
    several node processes sharing one PostgreSQL database."""

    __tablename__ = "seen_bundle"

    bundle_id: str = Field(primary_key=True, max_length=36)
    upload_id: str = Field(max_length=36)
    at: dt.datetime = Field(sa_column=_utc_column())


class AuditEvent(SQLModel, table=True):
    """One entry of the hash-chained audit trail (办法 第十九条; 浙江 六(三): never altered)."""

    __tablename__ = "audit_event"

    seq: int = Field(primary_key=True)
    at: dt.datetime = Field(sa_column=_utc_column())
    actor: str = Field(max_length=64)
    action: str = Field(max_length=64, index=True)
    subject: str | None = Field(default=None, max_length=128)
    detail: str
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class DatasetVersion(SQLModel, table=True):
    """One stored version of a catalog resource's dataset (归集): a full snapshot or an increment.

    The file (encrypted Parquet, relative to ``HOME/datasets``) is named after the bundle that
    brought it plus a nonce; storing the same bundle twice is impossible (``bundle_id`` is
    unique).
    """

    __tablename__ = "dataset_version"
    __table_args__ = (UniqueConstraint("resource", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    resource: str = Field(index=True, max_length=64)
    version: int
    bundle_id: str = Field(unique=True, max_length=36)
    provider: str = Field(max_length=32)
    mode: str = Field(max_length=16)
    rows: int = Field(sa_type=BigInteger)
    rejected: int = Field(sa_type=BigInteger)
    file: str = Field(max_length=255)
    sha256: str = Field(max_length=64)
    catalog_version: int
    created_at: dt.datetime = Field(sa_column=_utc_column())


class CalendarYear(SQLModel, table=True):
    """One year of working-day data imported from a calendar file (docs/working-days.md).

    ``holidays`` and ``workdays`` are JSON lists of ISO dates, sorted; ``sha256`` is the digest
    of the year's canonical content (:func:`exchange_server.store.calendar.canonical_json`).
    A year imported again replaces its row; every import is in the audit trail.
    """

    __tablename__ = "calendar_year"

    year: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    source: str
    holidays: str
    workdays: str
    sha256: str = Field(max_length=64)
    imported_at: dt.datetime = Field(sa_column=_utc_column())
    imported_by: str = Field(max_length=64)
