"""``exchange-server status`` through the real Typer app: what needs the administrator, in words
and as versioned JSON, with nothing personal in either (SQLite, and PostgreSQL when reachable)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from sqlmodel import select
from typer.testing import CliRunner, Result

from exchange_server.admin.cli import app
from exchange_server.admin.status_cli import SCHEMA, needs_attention
from exchange_server.store.models import AuditEvent, Department, QueryResource, Upload
from pki.identity import DeptCode
from tests.common.calendargen import write_calendar
from tests.server.pipeline.test_relays import RELAYED_ONLY, _query
from tests.server.pipeline.test_workflow import MZ, A, B, C, _push_data
from tests.server.world import World


@pytest.fixture
def world(catalog_world: World, tmp_path: Path) -> World:
    # next year's working days imported: in December a node without them needs attention
    calendar = write_calendar(tmp_path / "calendar-2027.toml")
    home = str(catalog_world.node.config.home)
    assert (
        CliRunner().invoke(app, ["calendar", "import", "--home", home, str(calendar)]).exit_code
        == 0
    )
    return catalog_world


def invoke(world: World, *args: str) -> Result:
    return CliRunner().invoke(app, ["status", "--home", str(world.node.config.home), *args])


def test_a_quiet_node_needs_nothing(world: World) -> None:
    _push_data(world)
    r = invoke(world, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["schema"] == SCHEMA and doc["attention"] is False
    assert doc["attention_reasons"] == []
    assert doc["uploads"]["by_state"] == {"done": 1} and doc["held"] == []
    assert doc["crl"]["current"] is True and doc["certificate"]["days_left"] > 30
    assert doc["stuck"] == [] and doc["pipeline"]["healthy"] is True
    assert doc["pipeline"]["queued"] == 0 and 2026 in doc["calendar"]["years"]
    assert doc["calendar"]["covers_next_year"] is True
    assert doc["audit"]["events"] >= 1 and doc["audit"]["checkpointed"] == 0
    home = str(world.node.config.home)
    assert CliRunner().invoke(app, ["audit", "checkpoint", "--home", home]).exit_code == 0
    after = json.loads(invoke(world, "--json").stdout)["audit"]
    assert after["checkpointed"] == after["events"] and after["newest_checkpoint_at"]
    words = invoke(world).stdout
    assert "pipeline: ok, 0 queued" in words and "2027" in words
    assert f"audit trail: {after['events']} events, {after['events']} under a signed" in words


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


def test_a_bundle_no_step_handles_is_stuck(world: World) -> None:
    """A recheck is accepted and kept in ``routed`` with nothing to move it (the issue "The
    rest of the verification procedure" adds the step): shown as stuck, needing attention."""
    path = world.seal(MZ, b"id\n1\n", kind="recheck")
    upload_id = world.upload(MZ, path)
    world.ingest.process(upload_id)
    r = invoke(world, "--json")
    assert r.exit_code == 1, r.output
    assert json.loads(r.stdout)["attention_reasons"] == ["1 upload(s) stuck"]
    (item,) = json.loads(r.stdout)["stuck"]
    assert item["upload_id"] == upload_id and item["kind"] == "recheck"
    assert item["why"] == "no step handles recheck bundles yet"
    assert f"STUCK since {item['since']}: upload {upload_id}" in invoke(world).stdout


def test_a_pipeline_that_does_not_keep_up_needs_attention(world: World) -> None:
    upload_id = world.upload(MZ, world.seal(MZ, b"id\n1\n"))  # committed, never processed
    with world.node.session() as s:
        up = s.get(Upload, upload_id)
        assert up is not None
        up.received_at = up.received_at - dt.timedelta(hours=1)
        s.add(up)
    r = invoke(world, "--json")
    assert r.exit_code == 1
    p = json.loads(r.stdout)["pipeline"]
    assert p["healthy"] is False and p["queued"] == 1 and p["oldest_queued_seconds"] >= 3600
    words = invoke(world).stdout
    assert "pipeline: NOT KEEPING UP, 1 queued" in words
    assert "NEEDS ATTENTION: the pipeline is not keeping up" in words


def _doc(**changes: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "held": [],
        "stuck": [],
        "pipeline": {"healthy": True},
        "deadlines": {"overdue": 0},
        "crl": {"current": True, "next_update": "2026-06-20T00:00:00+00:00"},
        "certificate": {"days_left": 200},
        "calendar": {"covers_this_year": True, "covers_next_year": False},
    }
    return doc | changes


def test_attention_rules_at_a_given_time() -> None:
    june = dt.datetime(2026, 6, 10, tzinfo=dt.UTC)
    assert needs_attention(_doc(), june) is False
    # next year's calendar matters in December only
    assert needs_attention(_doc(), june.replace(month=12)) is True
    assert needs_attention(
        _doc(calendar={"covers_this_year": False, "covers_next_year": True}), june
    )
    # a CRL due within a day, a certificate about to end
    assert needs_attention(_doc(), dt.datetime(2026, 6, 19, 1, tzinfo=dt.UTC)) is True
    assert needs_attention(_doc(certificate={"days_left": 29}), june) is True
    assert needs_attention(_doc(stuck=[{"upload_id": "x"}]), june) is True


def test_quota_use_per_department_and_a_department_near_its_quota(world: World) -> None:
    _push_data(world)  # RS330100 gets a receipt in its outbox
    doc = json.loads(invoke(world, "--json").stdout)
    rs = doc["spool"]["by_department"]["RS330100"]
    assert rs["outbox_files"] == 1 and rs["counted_bytes"] == rs["outbox_bytes"] > 0
    assert doc["spool"]["disk"]["free_bytes"] > 0 and doc["attention"] is False
    with world.node.session() as s:
        dept = s.get(Department, "RS330100")
        assert dept is not None
        dept.quota_bytes = rs["counted_bytes"]  # full
        s.add(dept)
    r = invoke(world, "--json")
    assert r.exit_code == 1
    assert "RS330100 uses 100% of its quota" in json.loads(r.stdout)["attention_reasons"]
    assert "quota use: " in invoke(world).stdout


def test_a_revoked_department_certificate_needs_attention(world: World) -> None:
    assert json.loads(invoke(world, "--json").stdout)["department_certificates"] == []
    world.ca.ca.revoke(dept=DeptCode("RS330100"))
    world.refresh_crl()
    r = invoke(world, "--json")
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert [(c["department"], c["state"]) for c in doc["department_certificates"]] == [
        ("RS330100", "revoked")
    ]
    assert "RS330100's certificate is revoked" in doc["attention_reasons"]
    assert "department certificate RS330100: revoked" in invoke(world).stdout
