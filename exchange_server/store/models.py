"""State-store tables (sqlmodel). The schema is owned by the alembic migrations beside this file.

Times are stored as timezone-aware UTC. Department codes, bundle ids and certificate serials are
plain strings here; the typed ``NewType`` wrappers live at the module boundaries.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import BigInteger, Column, Date, DateTime, UniqueConstraint
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
    "OutboxPull",
    "Query",
    "QueryNotice",
    "QueryResource",
    "QuerySegment",
    "QueryState",
    "ResourceState",
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
    #: Attempts that failed with a node-side error (bounded by ``limits.max_attempts``).
    attempts: int = Field(default=0)


class SeenBundle(SQLModel, table=True):
    """Bundle ids the node has accepted: the primary key makes replay impossible, even with
    several node processes sharing one PostgreSQL database."""

    __tablename__ = "seen_bundle"

    bundle_id: str = Field(primary_key=True, max_length=36)
    upload_id: str = Field(max_length=36)
    at: dt.datetime = Field(sa_column=_utc_column())


class QueryState(StrEnum):
    """A query's state as a whole (issue "Relayed queries")."""

    OPEN = "open"  # some resource still awaits its answer
    SUSPENDED = "suspended"  # persons lack authorization references (浙江 六(二))
    CLOSED = "closed"  # the final segment was delivered


class ResourceState(StrEnum):
    """The state of one requested resource of a query."""

    PENDING = "pending"  # relayed, the provider has not answered, the deadline has not passed
    EXTENDED = "extended"  # pending under an extended deadline (浙江 四(一)3)
    OVERDUE = "overdue"  # the deadline passed without an answer (a late answer is still taken)
    ANSWERED = "answered"  # answered by the engine or the provider
    NO_DATA = "no_data"  # hosted, but nothing was pushed for it
    FAILED = "failed"  # the node could not answer it
    TERMINATED = "terminated"  # ended without an answer, with a recorded reason (浙江 四(一)3)

    @property
    def waiting(self) -> bool:
        """Whether an answer may still come."""
        return self in (ResourceState.PENDING, ResourceState.EXTENDED, ResourceState.OVERDUE)


class Query(SQLModel, table=True):
    """One query application (查询申请) the node accepted, and where it stands."""

    __tablename__ = "query"

    bundle_id: str = Field(primary_key=True, max_length=36)
    upload_id: str = Field(max_length=36)
    requester: str = Field(index=True, max_length=32)
    business_type: str = Field(max_length=64)
    catalog_version: int
    persons: int
    state: str = Field(default=QueryState.OPEN.value, max_length=16, index=True)
    received_at: dt.datetime = Field(sa_column=_utc_column())
    #: The whole verification's deadline (浙江 四(一): 10 working days); None when the
    #: working-day calendar does not cover it yet (shown to the operator as E_CALENDAR).
    due_date: dt.date | None = Field(default=None, sa_column=Column(Date(), nullable=True))
    due_at: dt.datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    closed_at: dt.datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    #: When the whole verification's deadline passed with the query still open.
    overdue_at: dt.datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    updated_at: dt.datetime = Field(sa_column=_utc_column())


class QueryResource(SQLModel, table=True):
    """One requested resource of a query: how it is answered, its deadline and its state."""

    __tablename__ = "query_resource"
    __table_args__ = (UniqueConstraint("query_id", "resource"),)

    id: int | None = Field(default=None, primary_key=True)
    query_id: str = Field(index=True, max_length=36)
    resource: str = Field(max_length=64)
    #: ``node`` (the engine, from pushed datasets) or ``provider`` (relayed).
    routing: str = Field(max_length=16)
    provider: str = Field(max_length=32)
    state: str = Field(default=ResourceState.PENDING.value, max_length=16, index=True)
    feedback_days: int
    due_date: dt.date | None = Field(default=None, sa_column=Column(Date(), nullable=True))
    due_at: dt.datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    #: The relay's bundle id (a function of the query and the resource), for relayed ones.
    relay_id: str | None = Field(default=None, unique=True, max_length=36)
    relay_sent_at: dt.datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    answer_bundle: str | None = Field(default=None, max_length=36)
    answered_at: dt.datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    overdue_at: dt.datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    escalated_at: dt.datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    #: Who extended or terminated it, and why (浙江 四(一)3).
    decided_by: str | None = Field(default=None, max_length=64)
    note: str | None = Field(default=None, max_length=500)
    #: The result segment that carried its answer or its end.
    segment: int | None = None


class QuerySegment(SQLModel, table=True):
    """One result segment of a query (浙江 四(一)4), numbered from 1 in the order assigned.

    ``trigger`` says what it carries (``engine``, ``answer:<RESOURCE>``, ``end:<RESOURCE>``)
    and is unique per query, so one event never makes two segments; ``statuses`` is the
    per-resource state at assignment (JSON), so a redelivery after a crash says the same.
    """

    __tablename__ = "query_segment"
    __table_args__ = (UniqueConstraint("query_id", "seq"), UniqueConstraint("query_id", "trigger"))

    id: int | None = Field(default=None, primary_key=True)
    query_id: str = Field(index=True, max_length=36)
    seq: int
    trigger: str = Field(max_length=80)
    final: bool = False
    statuses: str
    created_at: dt.datetime = Field(sa_column=_utc_column())
    delivered_at: dt.datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))


class QueryNotice(SQLModel, table=True):
    """A notice the node owes a department about a query's resource: overdue, extended,
    terminated, a deadline set late (浙江 四(一)3). Recorded in the transaction that changes the
    resource, delivered after (``name`` is unique, so it is written once)."""

    __tablename__ = "query_notice"

    id: int | None = Field(default=None, primary_key=True)
    query_id: str = Field(index=True, max_length=36)
    resource: str = Field(max_length=64)
    dept: str = Field(max_length=32)
    kind: str = Field(max_length=16)
    name: str = Field(unique=True, max_length=255)
    fields: str
    created_at: dt.datetime = Field(sa_column=_utc_column())
    delivered_at: dt.datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))


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


class AuditCheckpoint(SQLModel, table=True):
    """A signed checkpoint of the audit trail: the first ``size`` events' RFC 9162 Merkle
    ``root`` (hex) in a C2SP signed note, and the tree's right edge (``frontier``, JSON list of
    hex hashes) from which the next checkpoint continues. Never updated or deleted."""

    __tablename__ = "audit_checkpoint"

    size: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    at: dt.datetime = Field(sa_column=_utc_column())
    root: str = Field(max_length=64)
    note: str
    frontier: str


class AuditPerson(SQLModel, table=True):
    """One person of an audited query (``seq`` is its ``query.opened`` event): the keyed digest
    of the ID number (HMAC-SHA256 under the node's audit key, never the number) and the
    authorization reference (``auth_ref``), masked. ``position`` orders the leaves of the event's
    ``person_root`` Merkle tree, which the event's hash covers."""

    __tablename__ = "audit_person"

    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    position: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    digest: str = Field(max_length=64, index=True)
    auth_ref: str | None = Field(default=None, max_length=64)


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


class OutboxPull(SQLModel, table=True):
    """A file of a department's outbox that the department downloaded completely (first time).

    Written by the SFTP front when a download that read every byte is closed. A pulled file no
    longer counts against the department's quota, and ``[retention] pulled_outbox_days`` after
    ``pulled_at`` it leaves the outbox for the node's evidence (``spool/sent``). ``size`` tells
    a later file under the same name apart (it is then not pulled until it is read in full).
    """

    __tablename__ = "outbox_pull"

    dept_code: str = Field(primary_key=True, max_length=32)
    name: str = Field(primary_key=True, max_length=255)
    size: int = Field(sa_type=BigInteger)
    pulled_at: dt.datetime = Field(sa_column=_utc_column())
