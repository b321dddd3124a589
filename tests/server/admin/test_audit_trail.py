"""The verifiable audit trail on a trail the pipeline wrote (SQLite, and PostgreSQL when
reachable): signed checkpoints, truncation, forged and forked checkpoints, the person index,
``audit person``, and extracts verified offline by ``exchange-pki audit verify``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import col, select
from typer.testing import CliRunner, Result

from exchange_common.idnumber import check_character
from exchange_server.store.checkpoints import origin_for
from exchange_server.store.models import AuditCheckpoint, AuditEvent, AuditPerson
from pki.checkpoint import Checkpoint, sign_checkpoint
from pki.cli import app as pki_app
from pki.keys import KeyType, generate_private_key
from pki.merkle import leaf_hash
from tests.server.admin.test_audit_cli import _events, _verify, invoke, world
from tests.server.pipeline.test_workflow import MZ, A, B, C, _push_query
from tests.server.world import World

__all__ = ["world"]  # the fixture: a trail the pipeline wrote


def _checkpoint(world: World) -> str:
    r = invoke(world, "checkpoint")
    assert r.exit_code == 0, r.output
    return r.stdout


def _published(world: World) -> Path:
    return world.node.config.path(world.node.config.audit.checkpoint_file)


def _checkpoints(world: World) -> list[AuditCheckpoint]:
    with world.node.session(write=False) as s:
        rows = s.exec(select(AuditCheckpoint).order_by(col(AuditCheckpoint.size))).all()
        return [r.model_copy() for r in rows]


def _pki(*args: str) -> Result:
    return CliRunner().invoke(pki_app, ["audit", "verify", *args])


def _trust(world: World) -> list[str]:
    cfg = world.node.config
    return ["--trust", str(cfg.path(cfg.trust_root)), "--crl", str(cfg.path(cfg.crl))]


def test_checkpoints_are_signed_published_and_checked(world: World) -> None:
    note = _checkpoint(world)
    n = len(_events(world))
    lines = note.split("\n")
    assert lines[0] == origin_for(world.node.config.code) and lines[1] == str(n)
    assert lines[3] == "" and lines[4].startswith(f"\u2014 {lines[0]} ")
    assert _published(world).read_text("utf-8") == note
    assert _checkpoint(world) == note  # nothing new: the newest one again, no new row
    _push_query(world)
    second = _checkpoint(world)
    assert [r.size for r in _checkpoints(world)] == [n, len(_events(world))]
    assert _published(world).read_text("utf-8") == second
    code, doc = _verify(world)
    assert code == 0, doc
    assert doc["checkpoints"] == 2 and doc["external_checkpoints"] == 1
    assert doc["newest_checkpoint"]["size"] == len(_events(world))


def test_a_truncated_tail_is_found(world: World) -> None:
    """Events cut off after a checkpoint: the stored checkpoint, and the published copy when
    the checkpoint rows are cut too, both name the truncation."""
    _checkpoint(world)
    n = len(_events(world))
    with world.node.session() as s:
        s.execute(text("DELETE FROM audit_event WHERE seq > :k"), {"k": n - 2})
    code, doc = _verify(world)
    assert code == 1
    problem = str(doc["problem"])
    assert problem.startswith(
        f"audit trail broken: the trail ends at event {n - 2} but checkpoint {n} (signed "
    )
    assert problem.endswith(f"covers {n} events: the tail was truncated")
    with world.node.session() as s:
        s.execute(text("DELETE FROM audit_checkpoint"))
    code, doc = _verify(world)
    assert code == 1
    assert f"the trail ends at event {n - 2} but the published checkpoint" in str(doc["problem"])
    assert "the tail was truncated" in str(doc["problem"])
    # an inspector's copy catches it even when the published file is gone too
    copy = world.tmp / "inspector.txt"
    copy.write_text(_published(world).read_text("utf-8"), "utf-8")
    _published(world).unlink()
    r = invoke(world, "verify", "--checkpoint", str(copy))
    assert r.exit_code == 1 and f"checkpoint file {copy}" in r.stdout


def test_a_forged_checkpoint_is_refused(world: World) -> None:
    _checkpoint(world)
    row = _checkpoints(world)[0]
    forger = generate_private_key(KeyType.EC)
    forged = sign_checkpoint(
        Checkpoint(origin_for(world.node.config.code), row.size, bytes.fromhex(row.root)), forger
    )
    with world.node.session() as s:
        s.execute(text("UPDATE audit_checkpoint SET note = :n"), {"n": forged})
    code, doc = _verify(world)
    assert code == 1
    assert f"checkpoint {row.size}" in str(doc["problem"])
    assert "no signature by the node's key" in str(doc["problem"])
    # a note whose numbers were edited after signing
    _published(world).unlink()
    with world.node.session() as s:
        s.execute(
            text("UPDATE audit_checkpoint SET note = :n"),
            {"n": row.note.replace(f"\n{row.size}\n", f"\n{row.size - 1}\n")},
        )
    code, doc = _verify(world)
    assert code == 1 and "does not verify" in str(doc["problem"])


def test_a_checkpoint_from_a_fork_is_found(world: World) -> None:
    """A checkpoint the node's own key signed over another history (a rewritten trail, or a
    second database that forked): valid signature, wrong root."""
    events = _events(world)
    _, key = world.node.identity()
    fork = sign_checkpoint(
        Checkpoint(origin_for(world.node.config.code), len(events), leaf_hash(b"other")), key
    )
    other = world.tmp / "fork.txt"
    other.write_text(fork, "utf-8")
    r = invoke(world, "verify", "--checkpoint", str(other), "--json")
    doc = json.loads(r.stdout)
    assert r.exit_code == 1
    assert doc["problem"] == (
        f"audit trail broken: checkpoint file {other} does not match the trail's first "
        f"{len(events)} events: the trail was rewritten, or the checkpoint is from a fork"
    )


def test_the_node_refuses_to_sign_over_an_altered_event(world: World) -> None:
    victim = _events(world)[1]
    with world.node.session() as s:
        s.execute(text("UPDATE audit_event SET actor = 'x' WHERE seq = :k"), {"k": victim.seq})
    r = invoke(world, "checkpoint")
    assert r.exit_code != 0 and f"event {victim.seq} was altered" in r.output
    assert _checkpoints(world) == [] and not _published(world).exists()


def test_the_trail_names_persons_by_keyed_digest_only(world: World) -> None:
    opened = [e for e in _events(world) if e.action == "query.opened"]
    assert len(opened) == 1
    detail = json.loads(opened[0].detail)
    assert detail["persons"] == 4 and len(detail["person_root"]) == 64
    with world.node.session(write=False) as s:
        people = s.exec(select(AuditPerson).order_by(col(AuditPerson.position))).all()
        dump = [e.model_dump_json() for e in s.exec(select(AuditEvent))]
    assert [p.position for p in people] == [0, 1, 2, 3]
    assert people[0].digest == people[3].digest != people[1].digest  # A twice, B, C
    assert [p.auth_ref for p in people] == ["SQ-1", "SQ-2", "SQ-3", "SQ-1"]
    for number in (A, B, C):
        assert all(number not in d and number.lower() not in d for d in dump)
        assert all(number not in p.digest for p in people)
    r = invoke(world, "person", B, "--json")
    assert r.exit_code == 0, r.output
    found = json.loads(r.stdout)["queries"]
    assert [(q["query"], q["authorization"]) for q in found] == [(opened[0].subject, "SQ-2")]
    assert B not in r.stdout
    text_out = invoke(world, "person", A).stdout
    assert f"query {opened[0].subject} by {MZ} under authorization SQ-1" in text_out
    assert A not in text_out
    stranger = "11010519700101003" + check_character("11010519700101003")
    nobody = invoke(world, "person", stranger)
    assert nobody.exit_code == 0 and "no audited query names this person" in nobody.stdout
    typo = invoke(world, "person", stranger[:-1] + "0" if stranger[-1] != "0" else "1")
    assert typo.exit_code != 0 and "check character" in typo.output
    assert stranger[:-1] not in typo.output and "Traceback" not in typo.output


@pytest.mark.parametrize("attack", ["digest", "delete", "insert", "authorization"])
def test_an_altered_person_index_is_found(world: World, attack: str) -> None:
    seq = next(e.seq for e in _events(world) if e.action == "query.opened")
    statement = {
        "digest": "UPDATE audit_person SET digest = :d WHERE position = 1",
        "delete": "DELETE FROM audit_person WHERE position = 2",
        "insert": "INSERT INTO audit_person (seq, position, digest) VALUES (:s, 4, :d)",
        "authorization": "UPDATE audit_person SET auth_ref = 'SQ-9' WHERE position = 0",
    }[attack]
    with world.node.session() as s:
        s.execute(text(statement), {"d": "0" * 64, "s": seq})
    code, doc = _verify(world)
    assert code == 1
    assert doc["problem"] == f"audit trail broken: the person index of event {seq} was altered"


def test_an_extract_verifies_offline_and_a_tampered_one_does_not(world: World) -> None:
    out = world.tmp / "mz.json"
    r = invoke(world, "export", "--department", MZ, "-o", str(out))
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text("utf-8"))
    assert doc["events"] and all(
        MZ in (e["actor"], e["subject"]) or f'"{MZ}"' in e["detail"] for e in doc["events"]
    )
    assert len(doc["events"]) < len(_events(world))
    ok = _pki(str(out), *_trust(world), "--json")
    assert ok.exit_code == 0, ok.output
    report = json.loads(ok.stdout)
    assert report["verified"] is True and report["events"] == len(doc["events"])
    assert report["checkpoint"]["size"] == len(_events(world))
    for field, value in (("detail", '{"forged": 1}'), ("actor", "RS330100"), ("seq", 1)):
        bad = json.loads(out.read_text("utf-8"))
        victim = bad["events"][-1]
        seq = victim["seq"]
        victim[field] = value if field != "seq" else (1 if seq != 1 else 2)
        (world.tmp / "bad.json").write_text(json.dumps(bad), "utf-8")
        refused = _pki(str(world.tmp / "bad.json"), *_trust(world))
        assert refused.exit_code == 1, (field, refused.output)
        assert "is not in the checkpointed trail" in refused.output
        assert "E_EXTRACT" in refused.output and "Traceback" not in refused.output
    # a checkpoint edited in the extract
    bad = json.loads(out.read_text("utf-8"))
    bad["checkpoint"] = bad["checkpoint"].replace(
        f"\n{report['checkpoint']['size']}\n", f"\n{report['checkpoint']['size'] + 1}\n"
    )
    (world.tmp / "bad.json").write_text(json.dumps(bad), "utf-8")
    refused = _pki(str(world.tmp / "bad.json"), *_trust(world))
    assert refused.exit_code == 1 and "E_CHECKPOINT" in refused.output


def test_a_person_extract_and_a_consistency_proof(world: World) -> None:
    older = world.tmp / "older.txt"
    older.write_text(_checkpoint(world), "utf-8")
    _push_query(world)
    out = world.tmp / "person.json"
    r = invoke(world, "export", "--person", B, "--consistency-from", str(older), "-o", str(out))
    assert r.exit_code == 0, r.output
    raw = out.read_text("utf-8")
    assert B not in raw and B.lower() not in raw and "欧阳娜娜" not in raw
    doc = json.loads(raw)
    assert [e["action"] for e in doc["events"]] == ["query.opened", "query.opened"]
    ok = _pki(str(out), *_trust(world), "--checkpoint", str(older), "--json")
    assert ok.exit_code == 0, ok.output
    report = json.loads(ok.stdout)
    assert report["persons"] == 2 and report["consistent_from"] == int(older.read_text().split()[1])
    # the person proof bound to another person fails
    bad = json.loads(raw)
    bad["events"][0]["person"]["digest"] = "f" * 64
    (world.tmp / "bad.json").write_text(json.dumps(bad), "utf-8")
    refused = _pki(str(world.tmp / "bad.json"), *_trust(world))
    assert (
        refused.exit_code == 1 and "the person is not among the query's persons" in refused.output
    )
    # an older checkpoint from a fork is not a prefix
    _, key = world.node.identity()
    size = int(older.read_text().split()[1])
    fork = world.tmp / "fork.txt"
    fork.write_text(
        sign_checkpoint(Checkpoint(origin_for(world.node.config.code), size, leaf_hash(b"x")), key)
    )
    refused = _pki(str(out), *_trust(world), "--checkpoint", str(fork))
    assert refused.exit_code == 1 and "not a prefix" in refused.output


def test_export_needs_a_selection_and_an_extract_from_another_ca_fails(
    world: World, tmp_path: Path
) -> None:
    r = invoke(world, "export", "-o", str(world.tmp / "x.json"))
    assert r.exit_code != 0 and "say what to export" in r.output
    assert not (world.tmp / "x.json").exists()
    out = world.tmp / "all.json"
    assert invoke(world, "export", "--all", "-o", str(out)).exit_code == 0
    from tests.conftest import make_ca

    other = make_ca(tmp_path / "other")
    other.ca.crl()
    refused = _pki(str(out), "--trust", str(other.dir / "root.pem"))
    assert refused.exit_code == 1 and "E_CHAIN" in refused.output
