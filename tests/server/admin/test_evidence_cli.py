"""``exchange-server archive get`` and ``exchange-server retention run`` through the real Typer
app, on a node with the example catalog (SQLite, and PostgreSQL when reachable).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from exchange_server.admin.cli import app
from exchange_server.config import CONFIG_NAME, RetentionConfig, render_config
from exchange_server.outbox.receipts import receipt_name
from exchange_server.pipeline.queries import relay_id, relay_name, result_name
from exchange_server.store.models import Query, Upload
from pki.bundle import sealed_header
from tests.server.pipeline.test_relays import RELAYED_ONLY, _query
from tests.server.pipeline.test_workflow import MZ, RS, _push_data, _push_query
from tests.server.world import World


@pytest.fixture
def world(catalog_world: World) -> World:
    """The test world with the example catalog published and the Workflow as router."""
    return catalog_world


def invoke(world: World, *args: str) -> Result:
    return CliRunner().invoke(app, [*args, "--home", str(world.node.config.home)])


def _get(world: World, ident: str, out: Path) -> dict[str, Any]:
    r = invoke(world, "archive", "get", ident, "--out", str(out), "--json")
    assert r.exit_code == 0, r.output
    doc: dict[str, Any] = json.loads(r.stdout)
    return doc


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_archive_get_returns_the_bundle_its_receipt_result_and_events(
    world: World, tmp_path: Path
) -> None:
    _push_data(world)
    up = _push_query(world)
    qid = up.bundle_id
    assert qid is not None and up.state == "done"
    out = tmp_path / "evidence"
    doc = _get(world, qid, out)
    spool = world.ingest.spool.root
    files = {f["file"]: f for f in doc["files"]}
    assert set(files) == {
        f"store/{qid}.bundle",
        f"outbox/{MZ}/{receipt_name(up.id)}",
        f"outbox/{MZ}/{result_name(qid)}",
    }
    for rel, entry in files.items():
        copy = out / rel
        assert entry["sha256"] == _sha(copy) == _sha(spool / entry["from"])
        assert entry["size"] == copy.stat().st_size and stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert files[f"store/{qid}.bundle"]["bundle_id"] == qid
    assert files[f"outbox/{MZ}/{result_name(qid)}"]["kind"] == "result"
    assert {stat.S_IMODE(d.stat().st_mode) for d in [out, *out.rglob("*")] if d.is_dir()} == {0o700}
    manifest = json.loads((out / "manifest.json").read_text("utf-8"))
    assert manifest["schema"] == "exchange-archive/1" and manifest["requested"] == qid
    assert manifest["files"] == doc["files"] and manifest["missing"] == []
    events = json.loads((out / "events.json").read_text("utf-8"))
    assert manifest["events"]["sha256"] == _sha(out / "events.json")
    assert manifest["events"]["count"] == len(events)
    actions = {e["action"] for e in events}
    assert {"bundle.accepted", "query.opened", "query.segment", "bundle.done"} <= actions
    assert all(qid in (e["subject"] or "") + e["detail"] or up.id in e["detail"] for e in events)
    assert [u["upload"] for u in manifest["uploads"]] == [up.id]
    assert [q["state"] for q in manifest["queries"]] == ["closed"]
    # the same case from its upload id, a unique prefix, and the receipt's own bundle id
    receipt = sealed_header(spool / "depts" / MZ / "outbox" / receipt_name(up.id))
    assert receipt is not None
    for ident in (up.id, qid[:8], str(receipt.bundle_id)):
        again = _get(world, ident, tmp_path / f"again-{ident}")
        assert {f["file"] for f in again["files"]} == set(files), ident


def test_archive_of_an_open_query_holds_its_relay_and_what_was_purged_is_listed(
    world: World, tmp_path: Path
) -> None:
    up = _query(world, RELAYED_ONLY)
    qid = up.bundle_id
    assert qid is not None
    doc = _get(world, qid, tmp_path / "open")
    rid = relay_id(qid, "RS-JY-01")
    assert f"outbox/{RS}/{relay_name(rid)}" in {f["file"] for f in doc["files"]}
    # a data push whose evidence the retention purged: listed as missing, the purge in events
    data = _push_data(world)
    with world.node.session() as s:
        row = s.get(Upload, data.id)
        assert row is not None
        row.updated_at = dt.datetime.now(dt.UTC) - dt.timedelta(days=2000)
        s.add(row)
    receipt = world.ingest.spool.outbox(RS) / receipt_name(data.id)
    old = (dt.datetime.now(dt.UTC) - dt.timedelta(days=2000)).timestamp()
    os.utime(receipt, (old, old))
    r = invoke(world, "retention", "run", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["purged"]["stored"] == [data.bundle_id]
    assert data.bundle_id is not None
    doc = _get(world, data.bundle_id, tmp_path / "purged")
    assert doc["files"] == []
    assert {m["what"] for m in doc["missing"]} == {
        f"store/{data.bundle_id}.bundle",
        receipt_name(data.id),
    }
    events = json.loads((tmp_path / "purged" / "events.json").read_text("utf-8"))
    assert "retention.purged" in {e["action"] for e in events}


def test_archive_get_refuses_unknown_ids_and_non_ids(world: World, tmp_path: Path) -> None:
    r = invoke(world, "archive", "get", "6f1c1d52-5a8e-4f4e-9d1e-7f3c2b9a0e51", "--out", "x")
    assert r.exit_code == 3 and "(E_NOT_FOUND)" in r.output and "Traceback" not in r.output
    r = invoke(world, "archive", "get", "330102195001010011", "--out", str(tmp_path / "y"))
    assert r.exit_code == 3 and "(E_USAGE)" in r.output
    assert "330102195001010011" not in r.output  # an ID number typed by mistake stays masked
    assert not (tmp_path / "y").exists()


def test_retention_run_dry_json_and_options(world: World) -> None:
    cfg = dataclasses.replace(world.node.config, retention=RetentionConfig(quarantine_days=1))
    (cfg.home / CONFIG_NAME).write_text(render_config(cfg), encoding="utf-8")
    junk = world.upload(MZ, b"not a bundle")
    assert world.ingest.process(junk).value == "rejected"
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).isoformat()
    r = invoke(world, "retention", "run", "--dry-run", "--at", later, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["schema"] == "exchange-retention-run/1" and doc["dry_run"] is True
    assert doc["purged"] == {"quarantine": [junk]} and doc["audit_seq"] is None
    assert doc["policy"]["quarantine_days"] == 1
    assert (world.ingest.spool.quarantine / junk).exists()
    r = invoke(world, "retention", "run", "--at", later)
    assert r.exit_code == 3 and "(E_USAGE)" in r.output
    r = invoke(world, "retention", "run")
    assert r.exit_code == 0 and "purged: 0 stored bundle(s)" in r.stdout
    r = invoke(world, "retention", "run", "--help")
    assert r.exit_code == 0 and "Examples" in r.stdout
    with world.node.session(write=False) as s:
        assert s.get(Query, "none") is None  # the store still opens: nothing was touched
