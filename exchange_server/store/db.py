"""Opening the state store: SQLite (WAL) by default, PostgreSQL by URL; migrations by alembic.

``open_store(url)`` returns an engine whose schema is at the newest migration. SQLite gets
``journal_mode=WAL``, ``synchronous=FULL`` and ``foreign_keys=ON`` on every connection, so a
crash never loses a committed transaction and readers do not block the writer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.exc import SQLAlchemyError

from exchange_common.errors import StoreError

__all__ = ["migrate", "open_store", "sqlite_url", "writer"]

_MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BEGIN = "exchange_sqlite_begin"


def sqlite_url(path: Path) -> str:
    """SQLAlchemy URL of a SQLite database file."""
    return f"sqlite:///{Path(path).resolve()}"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Transactions are begun by _sqlite_begin below, not by the driver, so that writers can
    # take SQLite's write lock up front (BEGIN IMMEDIATE) instead of failing to upgrade a read
    # transaction when another process committed meanwhile.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    mode = conn.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


def writer(engine: Engine) -> Engine:
    """The engine to use for transactions that write.

    On SQLite every transaction through it starts with ``BEGIN IMMEDIATE``: it waits for the
    write lock first (``busy_timeout``), so read-then-write sequences such as the audit
    trail's hash chain are serialised across threads and processes. Elsewhere it is ``engine``.
    """
    if engine.dialect.name != "sqlite":
        return engine
    return engine.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})


def _private_sqlite_file(url: str) -> None:
    """Create the SQLite file owner-only (0600), or tighten an existing one: SQLite gives its
    journal and WAL files the database file's mode. In-memory URLs are left alone."""
    name = make_url(url).database
    if not name or name == ":memory:" or name.startswith("file:"):
        return
    path = Path(name)
    if not path.parent.is_dir():
        return  # SQLite reports it
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return  # read-only: SQLite opens it as it can, or reports why not
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        _private_sqlite_file(url)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest alembic revision (idempotent)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def open_store(url: str, *, upgrade: bool = True) -> Engine:
    """Connect to the store at ``url`` and (by default) migrate it; raise ``StoreError``."""
    try:
        engine = _engine(url)
        if upgrade:
            migrate(engine)
        else:
            with engine.connect():
                pass
    except SQLAlchemyError as e:
        raise StoreError(
            f"cannot open the state store: {e.__class__.__name__}", code="E_STORE", detail=str(e)
        ) from e
    return engine
