"""``exchange-server query``: list, show, extend, terminate and tick through the real Typer app,
on a node with the example catalog and a relayed query (SQLite, and PostgreSQL when reachable).
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner, Result

from exchange_server.admin.cli import app
from exchange_server.pipeline.queries import relay_id
from tests.server.pipeline.test_relays import RELAYED_ONLY, _query, _state
from tests.server.pipeline.test_workflow import RS
from tests.server.world import World


@pytest.fixture
def world(catalog_world: World) -> World:
    """The test world with the example catalog published and the Workflow as router."""
    return catalog_world


def invoke(world: World, *args: str) -> Result:
    return CliRunner().invoke(app, ["query", *args, "--home", str(world.node.config.home)])


def test_list_and_show_say_routing_state_and_deadline(world: World) -> None:
    qid = _query(world, RELAYED_ONLY).bundle_id
    assert qid is not None
    r = invoke(world, "list", "--json")
    assert r.exit_code == 0, r.output
    [q] = json.loads(r.stdout)["queries"]
    assert (q["query"], q["state"], q["due_date"]) == (qid, "open", "2026-10-16")
    [res] = q["resources"]
    assert (res["resource"], res["answered_by"], res["state"], res["due_date"]) == (
        "RS-JY-01",
        "provider",
        "pending",
        "2026-10-10",
    )
    assert res["relay_id"] == relay_id(qid, "RS-JY-01") and res["relay_sent_at"]
    r = invoke(world, "show", qid)
    assert r.exit_code == 0 and "RS-JY-01" in r.stdout and "pending" in r.stdout
    r = invoke(world, "list", "--state", "closed", "--json")
    assert json.loads(r.stdout)["queries"] == []


def test_tick_at_a_time_marks_overdue_and_extend_and_terminate_are_recorded(
    world: World,
) -> None:
    qid = _query(world, RELAYED_ONLY).bundle_id
    assert qid is not None
    r = invoke(world, "tick", "--at", "2026-10-11T00:00:00+08:00", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["overdue"] == 1
    assert _state(world, qid) == {"RS-JY-01": "overdue"}
    r = invoke(world, "extend", qid, "RS-JY-01", "--days", "2", "--reason", "停机", "--by", "王")
    assert r.exit_code == 0, r.output
    assert "2026-10-13" in r.stdout
    r = invoke(world, "show", qid, "--json")
    body = json.loads(r.stdout)
    assert body["resources"][0]["state"] == "extended"
    assert body["resources"][0]["decided_by"] == "王"
    assert {n["kind"] for n in body["notices"]} == {"overdue", "extended"}
    r = invoke(world, "terminate", qid, "RS-JY-01", "--reason", "不可抗力", "--by", "王", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["final"] is True
    assert _state(world, qid) == {"RS-JY-01": "terminated"}
    assert any(n.startswith("notice-terminated-") for n in
               (p.name for p in world.ingest.spool.outbox(RS).iterdir()))  # fmt: skip


def test_decisions_on_what_cannot_change_fail_with_a_reason(world: World) -> None:
    qid = _query(world, RELAYED_ONLY).bundle_id
    assert qid is not None
    r = invoke(world, "extend", qid, "XX-01", "--days", "2", "--reason", "r", "--by", "b")
    assert r.exit_code == 3 and "E_NOT_FOUND" in r.stderr and "Traceback" not in r.stderr
    r = invoke(world, "terminate", qid, "RS-JY-01", "--reason", "r", "--by", "b")
    assert r.exit_code == 0
    r = invoke(world, "terminate", qid, "RS-JY-01", "--reason", "r", "--by", "b")
    assert r.exit_code == 3 and "E_QUERY_STATE" in r.stderr
    r = invoke(world, "show", "no-such-query")
    assert r.exit_code == 3 and "E_NOT_FOUND" in r.stderr
    r = invoke(world, "list", "--state", "bogus")
    assert r.exit_code != 0 and "E_USAGE" in r.stderr
