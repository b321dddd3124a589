"""``exchange-server status`` through the real Typer app: what needs the administrator, in words
and as versioned JSON, with nothing personal in either (SQLite, and PostgreSQL when reachable)."""

from __future__ import annotations

import json

import pytest
from sqlmodel import select
from typer.testing import CliRunner, Result

from exchange_server.admin.cli import app
from exchange_server.admin.status_cli import SCHEMA
from exchange_server.store.models import AuditEvent, QueryResource, Upload
from tests.server.pipeline.test_relays import RELAYED_ONLY, _query
from tests.server.pipeline.test_workflow import MZ, A, B, C, _push_data
from tests.server.world import World


@pytest.fixture
def world(catalog_world: World) -> World:
    return catalog_world


def invoke(world: World, *args: str) -> Result:
    return CliRunner().invoke(app, ["status", "--home", str(world.node.config.home), *args])


def test_a_quiet_node_needs_nothing(world: World) -> None:
    _push_data(world)
    r = invoke(world, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["schema"] == SCHEMA and doc["attention"] is False
    assert doc["uploads"]["by_state"] == {"done": 1} and doc["held"] == []
    assert doc["crl"]["current"] is True and doc["certificate"]["days_left"] > 30


def test_held_uploads_overdue_deadlines_and_rejections_need_attention(world: World) -> None:
    _push_data(world)
    refused = _push_data(world, sender=MZ)  # someone else's resource: E_PROVIDER
    assert refused.reason_code == "E_PROVIDER"
    query = _query(world, RELAYED_ONLY)
    with world.node.session() as s:
        # a resource past its deadline, and an upload the pipeline gave up on after its receipt
        r = s.exec(select(QueryResource).where(QueryResource.query_id == query.bundle_id)).one()
        r.state = "overdue"
        s.add(r)
        up = s.get(Upload, query.id)
        assert up is not None
        up.state, up.attempts = "accepted", world.node.config.limits.max_attempts
        s.add(up)
    r = invoke(world, "--json")
    assert r.exit_code == 1, r.output  # something needs the administrator
    doc = json.loads(r.stdout)
    assert doc["attention"] is True
    assert [h["upload_id"] for h in doc["held"]] == [query.id]
    assert doc["rejections_last_day"] == {"E_PROVIDER": 1}
    assert doc["deadlines"]["overdue"] == 1
    assert doc["uploads"]["by_department"][MZ] == {"rejected": 1, "accepted": 1}
    assert doc["oldest_moving"]["upload_id"] == query.id
    words = invoke(world)
    assert words.exit_code == 1
    assert f"HELD after 5 failed attempts: upload {query.id}" in words.stdout
    assert "1 overdue" in words.stdout and "E_PROVIDER 1" in words.stdout
    for text in (words.stdout, r.stdout):
        assert not any(x in text for x in (A, B, B.lower(), C, "张三", "欧阳娜娜", "李四"))


def test_a_held_upload_is_taken_up_again_by_retry_and_nothing_else_is(world: World) -> None:
    query = _query(world, RELAYED_ONLY)
    home = str(world.node.config.home)
    runner = CliRunner()
    refused = runner.invoke(app, ["upload", "retry", "--home", home, query.id, "--by", "张科长"])
    assert refused.exit_code == 3 and "is not held" in refused.output  # routed, never failed
    with world.node.session() as s:
        up = s.get(Upload, query.id)
        assert up is not None
        up.state, up.attempts = "accepted", world.node.config.limits.max_attempts
        s.add(up)
    assert query.id not in world.ingest.pending()
    ok = runner.invoke(
        app, ["upload", "retry", "--home", home, query.id, "--by", "张科长", "--json"]
    )
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout) == {"upload_id": query.id, "retried": True}
    assert query.id in world.ingest.pending()  # the pipeline takes it up again
    with world.node.session(write=False) as s:
        events = s.exec(select(AuditEvent).where(AuditEvent.action == "bundle.retry")).all()
        assert [(e.actor, e.subject) for e in events] == [("张科长", query.bundle_id)]
    assert json.loads(invoke(world, "--json").stdout)["held"] == []
