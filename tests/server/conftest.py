"""Store fixtures: every store test runs on SQLite and, when reachable, on PostgreSQL.

PostgreSQL is the CI machine's 127.0.0.1:5432 (trust auth, database ``test``), or the URL in
``EXCHANGE_TEST_PG`` (an admin URL to the database to use). Each test gets its own schema, dropped
afterwards, so runs never see each other's rows. When PostgreSQL is not reachable the PostgreSQL
half skips with a message saying so; the SQLite half always runs.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from exchange_server.data.catalog import CatalogStore
from exchange_server.pipeline.workflow import Workflow
from exchange_server.store.db import open_store
from tests.conftest import CAFixture
from tests.server.world import World, build_world, close_worlds

PG_URL = os.environ.get("EXCHANGE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_reachable() -> str | None:
    try:
        import psycopg

        dsn = PG_URL.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn, connect_timeout=3):
            return None
    except Exception as e:  # any failure means "not here": report why in the skip
        return f"{type(e).__name__}: {e}".splitlines()[0]


_PG_PROBLEM = _pg_reachable()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """URL of an empty, private store (SQLite file or PostgreSQL schema)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('store') / 'state.db'}"
        return
    if _PG_PROBLEM is not None:
        pytest.skip(f"PostgreSQL not reachable at {PG_URL} ({_PG_PROBLEM}); SQLite half ran")
    with pg_schema_url() as url:
        try:
            yield url
        finally:
            close_worlds()  # the test's pools go before their schema does


@contextlib.contextmanager
def pg_schema_url() -> Iterator[str]:
    """The URL of a fresh, private PostgreSQL schema at PG_URL, dropped afterwards (the caller
    has checked that PostgreSQL is reachable)."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    dsn = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(autouse=True)
def _close_worlds() -> Iterator[None]:
    """Every world a test built is closed after it (its store's connections returned)."""
    yield
    close_worlds()


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    """A migrated engine on the parametrised store."""
    eng = open_store(store_url)
    yield eng
    eng.dispose()


# --- a node with the example catalog published (pipeline and admin tests) ------------------

CATALOG = Path(__file__).resolve().parents[2] / "config" / "catalog.example.toml"


@pytest.fixture
def catalog_world(tmp_path: Path, test_ca: CAFixture, store_url: str) -> World:
    """A node with the example catalog published and the :class:`Workflow` as its router
    (SQLite, and PostgreSQL when reachable)."""
    w = build_world(tmp_path, test_ca, store_url)
    CatalogStore.for_home(w.node.config.home).publish(CATALOG)
    w.ingest.router = Workflow(w.node, w.ingest.spool)
    return w
