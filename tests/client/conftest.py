"""Fixtures of the client tests: a client directory made from the test CA, no node."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from exchange_client.cli import app
from tests.client.clientdir import init, make_world
from tests.conftest import CAFixture


@pytest.fixture
def world(test_ca: CAFixture, tmp_path: Path) -> dict[str, Path]:
    """Certificates and paths for a client directory (see :func:`make_world`)."""
    return make_world(test_ca, tmp_path)


@pytest.fixture
def client_dir(world: dict[str, Path]) -> Path:
    """An initialised MZ330100 client directory (its node is never reachable)."""
    r = CliRunner().invoke(
        app, init(world, "--cert", str(world["cert"]), "--key", str(world["key"]))
    )
    assert r.exit_code == 0, r.output
    return world["dir"]
