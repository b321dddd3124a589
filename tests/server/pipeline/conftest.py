"""Fixtures of the pipeline tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from exchange_server.data.catalog import CatalogStore
from exchange_server.pipeline.workflow import Workflow
from tests.conftest import CAFixture
from tests.server.world import World, build_world

CATALOG = Path(__file__).resolve().parents[3] / "config" / "catalog.example.toml"


@pytest.fixture
def catalog_world(tmp_path: Path, test_ca: CAFixture, store_url: str) -> World:
    """A node with the example catalog published and the :class:`Workflow` as its router
    (SQLite, and PostgreSQL when reachable)."""
    w = build_world(tmp_path, test_ca, store_url)
    CatalogStore.for_home(w.node.config.home).publish(CATALOG)
    w.ingest.router = Workflow(w.node, w.ingest.spool)
    return w
