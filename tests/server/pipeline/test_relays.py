"""Relayed queries through the pipeline: routing per resource, relays, answers, segments.

The example catalog is published: RS-SI-01 is answered by the node from 人社's pushed data,
RS-JY-01 is kept by 人社 and relayed (``answered_by = "provider"``). Every test drives the real
:class:`Runner` with the :class:`Workflow` on a real node home (SQLite, and PostgreSQL when
reachable); bundles are sealed and opened with real certificates.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from exchange_server.pipeline.queries import QueryBook, relay_id, relay_name, result_name
from exchange_server.store.audit import verify_chain
from exchange_server.store.models import AuditEvent, Query, QueryResource, QuerySegment, Upload
from pki.bundle import open_bundle
from tests.server.pipeline.test_workflow import (
    APPLICATION,
    MZ,
    PERSONS,
    RS,
    A,
    B,
    C,
    _push_data,
    _receipt,
    _upload,
)
from tests.server.world import World


@pytest.fixture
def world(catalog_world: World) -> World:
    """The test world with the example catalog published and the Workflow as router."""
    return catalog_world


SHANGHAI = dt.timezone(dt.timedelta(hours=8))
#: Received on Monday 28 Sep 2026, 10:00 in Shanghai: 5 working days run across National
#: Day (1–7 Oct off, Sat 10 Oct worked): 29, 30 Sep, 8, 9, 10 Oct. Written out by hand from
#: the State Council's 2026 schedule, not computed.
RECEIVED = dt.datetime(2026, 9, 28, 10, 0, tzinfo=SHANGHAI)
DUE = "2026-10-10"
#: The whole verification (10 working days): 29, 30 Sep, 8, 9, 10, 12, 13, 14, 15, 16 Oct.
QUERY_DUE = "2026-10-16"

MIXED = {
    **APPLICATION,
    "resources": [{"code": "RS-SI-01"}, {"code": "RS-JY-01", "items": ["就业状态", "登记日期"]}],
}


#: A query of the relayed resource only (two of its items).
RELAYED_ONLY = {**MIXED, "resources": [{"code": "RS-JY-01", "items": ["就业状态", "登记日期"]}]}


def _received_at(world: World, upload_id: str, when: dt.datetime) -> None:
    with world.node.session() as s:
        row = s.get(Upload, upload_id)
        assert row is not None
        row.received_at = when
        s.add(row)


def _query(world: World, fields: dict[str, Any] = MIXED, table: str = PERSONS) -> Upload:
    path = world.seal(MZ, table.encode(), kind="query", fields=fields, member="persons.csv")
    upload_id = world.upload(MZ, path)
    _received_at(world, upload_id, RECEIVED)
    world.ingest.process(upload_id)
    return _upload(world, upload_id)


def _open(world: World, dept: str, name: str) -> tuple[dict[str, Any], Path]:
    issued = world.depts[dept]
    assert issued.key is not None
    out = world.tmp / f"opened-{uuid.uuid4().hex}"
    opened = open_bundle(
        world.ingest.spool.outbox(dept) / name,
        out,
        recipient_key=issued.key,
        recipient_cert=issued.certificate,
        trust=world.node.trust(),
        now=dt.datetime.now(dt.UTC),
    )
    return dict(opened.manifest.fields), out


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _answer(
    world: World, rid: str, body: str, *, sender: str = RS, fields: dict[str, Any] | None = None
) -> Upload:
    path = world.seal(
        sender,
        body.encode(),
        kind="response",
        fields={"in_reply_to": rid} if fields is None else fields,
        member="answer.csv",
    )
    upload_id = world.upload(sender, path)
    world.ingest.process(upload_id)
    return _upload(world, upload_id)


def _outbox(world: World, dept: str) -> set[str]:
    return {p.name for p in world.ingest.spool.outbox(dept).iterdir()}


def _state(world: World, query_id: str) -> dict[str, str]:
    with world.node.session(write=False) as s:
        rows = s.exec(select(QueryResource).where(QueryResource.query_id == query_id)).all()
        return {r.resource: r.state for r in rows}


GOOD = f"公民身份号码,就业状态,登记日期\n{A},就业,2025-06-01\n{C},失业,2026-03-01\n"


def test_mixed_query_answers_hosted_at_once_and_relays_the_rest(world: World) -> None:
    _push_data(world)
    up = _query(world)
    assert up.state == "routed", up.reason_detail
    qid = up.bundle_id
    assert qid is not None
    # the receipt says where each resource went and until when (Asia/Shanghai dates)
    receipt = _receipt(world, up, MZ)
    details = receipt["details"]
    assert isinstance(details, dict)
    routing = {r["resource"]: r for r in details["query"]["routing"]}
    assert routing["RS-SI-01"]["answered_by"] == "node"
    assert (routing["RS-JY-01"]["answered_by"], routing["RS-JY-01"]["due_date"]) == (
        "provider",
        DUE,
    )
    assert details["query"]["due_date"] == QUERY_DUE
    # segment 1: the hosted resource answered, the relayed one pending with its deadline
    fields, out = _open(world, MZ, result_name(qid, 1))
    assert (fields["segment"], fields["final"], fields["status"]) == (1, False, "pending")
    assert fields["waiting"] == ["RS-JY-01"]
    report = json.loads((out / "report.json").read_text("utf-8"))
    states = {r["resource"]: (r["state"], r["due_date"]) for r in report["resources"]}
    assert states == {"RS-SI-01": ("answered", None), "RS-JY-01": ("pending", DUE)}
    assert (out / "RS-SI-01-results.csv").exists() and not (out / "RS-JY-01-results.csv").exists()
    # the relay: only what the provider needs (keys and authorizations; no names, no household)
    rid = relay_id(qid, "RS-JY-01")
    assert relay_name(rid) in _outbox(world, RS)
    rfields, rout = _open(world, RS, relay_name(rid))
    assert (rfields["resource"], rfields["due_date"]) == ("RS-JY-01", DUE)
    assert rfields["items"] == ["就业状态", "登记日期"] and rfields["persons"] == 3
    assert "requester" not in rfields and MZ not in json.dumps(rfields)
    persons = _rows(rout / "persons.csv")
    assert set(persons[0]) == {"公民身份号码", "授权编号"}
    assert sorted(p["公民身份号码"] for p in persons) == sorted({A, B, C})
    assert _state(world, qid) == {"RS-SI-01": "answered", "RS-JY-01": "pending"}


def test_good_answer_becomes_the_final_segment_and_closes_the_query(world: World) -> None:
    _push_data(world)
    up = _query(world)
    qid = up.bundle_id
    assert qid is not None
    answer = _answer(world, relay_id(qid, "RS-JY-01"), GOOD)
    assert answer.state == "done", answer.reason_detail
    receipt = _receipt(world, answer, RS)
    assert receipt["verdict"] == "accepted"
    details = receipt["details"]
    assert isinstance(details, dict)
    assert details["answer"]["rows"] == 2 and details["answer"]["persons"] == 2
    fields, out = _open(world, MZ, result_name(qid, 2))
    assert (fields["segment"], fields["final"], fields["status"]) == (2, True, "answered")
    rows = {r["id_number"]: r for r in _rows(out / "RS-JY-01-results.csv")}
    assert rows[A]["status"] == "match" and rows[A]["就业状态"] == "就业"
    assert rows[B]["status"] == "no_record"  # asked, not in the answer
    assert "就业单位名称" not in rows[A]  # not asked
    assert _upload(world, up.id).state == "done"  # the query's upload left "routed"
    with world.node.session(write=False) as s:
        q = s.get(Query, qid)
        assert q is not None and q.state == "closed"
        segs = s.exec(select(QuerySegment).where(QuerySegment.query_id == qid)).all()
        assert sorted((g.seq, g.final, g.delivered_at is not None) for g in segs) == [
            (1, False, True),
            (2, True, True),
        ]
        verify_chain(s)
        details = " ".join(e.detail for e in s.exec(select(AuditEvent)))
        assert A not in details and C not in details
    # a second answer to the closed relay is refused, and nothing new reaches the requester
    before = _outbox(world, MZ)
    again = _answer(world, relay_id(qid, "RS-JY-01"), GOOD)
    assert (again.state, again.reason_code) == ("rejected", "E_RELAY_CLOSED")
    assert _outbox(world, MZ) == before


@pytest.mark.parametrize(
    ("body", "code"),
    [
        # a person the relay did not ask about (not in the persons list)
        ("公民身份号码,就业状态\n" + f"{A},就业\n" + "110101199003070038,就业\n", "E_NOT_ASKED"),
        # an item of the resource that the relay did not ask for
        (f"公民身份号码,就业状态,就业单位名称\n{A},就业,某公司\n", "E_NOT_ASKED"),
        # a column that is no item of the resource at all
        (f"公民身份号码,就业状态,工资\n{A},就业,1\n", "E_SCHEMA"),
        # a value outside the item's code list, a date that is no date
        (f"公民身份号码,就业状态\n{A},在职\n", "E_ANSWER_VALUES"),
        (f"公民身份号码,就业状态,登记日期\n{A},就业,2025-13-45\n", "E_ANSWER_VALUES"),
        # a key that is no valid ID number (GB 11643 check character wrong), one left blank
        (
            f"公民身份号码,就业状态\n{A},就业\n{A[:-1]}{'0' if A[-1] != '0' else '1'},就业\n",
            "E_ANSWER_VALUES",
        ),
        (f"公民身份号码,就业状态\n{A},就业\n ,就业\n", "E_ANSWER_VALUES"),
    ],
    ids=[
        "stranger",
        "item-not-asked",
        "unknown-column",
        "bad-code",
        "bad-date",
        "invalid-key",
        "blank-key",
    ],
)
def test_bad_answer_is_refused_and_the_relay_stays_open(world: World, body: str, code: str) -> None:
    up = _query(
        world, {**MIXED, "resources": [{"code": "RS-JY-01", "items": ["就业状态", "登记日期"]}]}
    )
    qid = up.bundle_id
    assert qid is not None
    before = _outbox(world, MZ)
    bad = _answer(world, relay_id(qid, "RS-JY-01"), body)
    assert (bad.state, bad.reason_code) == ("rejected", code)
    receipt = _receipt(world, bad, RS)
    assert receipt["verdict"] == "rejected" and receipt["reason_code"] == code
    # the receipt names the problem, never a person's data
    assert A not in json.dumps(receipt, ensure_ascii=False)
    assert "110101199003070038" not in json.dumps(receipt, ensure_ascii=False)
    assert _state(world, qid) == {"RS-JY-01": "pending"}
    assert _outbox(world, MZ) == before  # no segment for a refused answer
    assert _answer_folders(world, qid) == []  # and no merged content left behind
    # the relay still takes a good answer
    good = _answer(world, relay_id(qid, "RS-JY-01"), GOOD)
    assert good.state == "done", good.reason_detail
    assert _state(world, qid) == {"RS-JY-01": "answered"}


def _answer_folders(world: World, qid: str) -> list[Path]:
    answers = world.ingest.spool.root / "queries" / qid / "answers"
    return sorted(p for p in answers.iterdir() if p.is_dir()) if answers.is_dir() else []


class _Crash(Exception):
    """A kill at one precise step, for the in-process crash tests."""


def _crash_once(monkeypatch: pytest.MonkeyPatch, before: Callable[[], None] = lambda: None) -> None:
    """Make the next segment assignment die after its content was placed (``before`` runs
    first, as what the crash left behind)."""
    real = QueryBook.assign
    state = {"armed": True}

    def assign(self: QueryBook, *args: Any, **kwargs: Any) -> Any:
        if state["armed"]:
            state["armed"] = False
            before()
            raise _Crash
        return real(self, *args, **kwargs)

    monkeypatch.setattr(QueryBook, "assign", assign)


def _answer_crashing(world: World, rid: str) -> str:
    path = world.seal(
        RS, GOOD.encode(), kind="response", fields={"in_reply_to": rid}, member="answer.csv"
    )
    upload_id = world.upload(RS, path)
    with pytest.raises(_Crash):
        world.ingest.process(upload_id)
    assert _upload(world, upload_id).state == "accepted"  # receipt sent, route to repeat
    return upload_id


def test_answer_placed_before_a_crash_becomes_one_segment(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after the merged answer moved into its segment folder, before the segment was
    assigned: the restarted route assigns that very content, once."""
    up = _query(world, RELAYED_ONLY)
    qid = up.bundle_id
    assert qid is not None
    _crash_once(monkeypatch)
    upload_id = _answer_crashing(world, relay_id(qid, "RS-JY-01"))
    assert _answer_folders(world, qid) == []  # moved into the segment folder
    assert world.ingest.process(upload_id).value == "done"
    fields, out = _open(world, MZ, result_name(qid, 1))
    assert (fields["segment"], fields["final"]) == (1, True)
    # A is listed twice: one result row (the first listing), as for a hosted resource
    assert [(r["id_number"], r["status"]) for r in _rows(out / "RS-JY-01-results.csv")] == [
        (A, "match"),
        (B, "no_record"),
        (C, "match"),
    ]
    assert {n for n in _outbox(world, MZ) if n.startswith(f"result-{qid}")} == {result_name(qid, 1)}


def test_answer_content_lost_in_a_crash_is_merged_again(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The placed content is gone when route runs again (or belongs to another answer): the
    answer is merged again from its bundle, and the segment says what that answer says."""
    up = _query(world, RELAYED_ONLY)
    qid = up.bundle_id
    assert qid is not None
    segments = world.ingest.spool.root / "queries" / qid / "segments"

    def lose() -> None:
        shutil.rmtree(segments)

    _crash_once(monkeypatch, lose)
    upload_id = _answer_crashing(world, relay_id(qid, "RS-JY-01"))
    assert not segments.exists() and _answer_folders(world, qid) == []
    assert world.ingest.process(upload_id).value == "done"
    _, out = _open(world, MZ, result_name(qid, 1))
    rows = {r["id_number"]: r for r in _rows(out / "RS-JY-01-results.csv")}
    assert rows[C]["就业状态"] == "失业" and rows[B]["status"] == "no_record"


def test_answer_from_another_department_is_refused(world: World) -> None:
    up = _query(world)
    qid = up.bundle_id
    assert qid is not None
    forged = _answer(world, relay_id(qid, "RS-JY-01"), GOOD, sender=MZ)
    assert (forged.state, forged.reason_code) == ("rejected", "E_PROVIDER")
    assert _state(world, qid)["RS-JY-01"] == "pending"


@pytest.mark.parametrize(
    "fields",
    [{"in_reply_to": str(uuid.uuid4())}, {"in_reply_to": "张三 110101199003070038"}, {}],
    ids=["unknown-id", "hostile-text", "missing"],
)
def test_answer_to_no_relay_is_refused_without_echoing_it(
    world: World, fields: dict[str, Any]
) -> None:
    up = _answer(world, "", GOOD, fields=fields)
    assert up.state == "rejected"
    assert up.reason_code in ("E_RELAY_UNKNOWN", "E_APPLICATION")
    receipt = json.dumps(_receipt(world, up, RS), ensure_ascii=False)
    assert "张三" not in receipt and "110101199003070038" not in receipt


def test_query_of_relayed_resources_only_waits_without_a_first_segment(world: World) -> None:
    up = _query(world, {**MIXED, "resources": ["RS-JY-01"]})
    qid = up.bundle_id
    assert qid is not None and up.state == "routed"
    assert not any(n.startswith(f"result-{qid}") for n in _outbox(world, MZ))
    done = _answer(world, relay_id(qid, "RS-JY-01"), GOOD)
    assert done.state == "done"
    fields, _ = _open(world, MZ, result_name(qid, 1))
    assert (fields["segment"], fields["final"], fields["status"]) == (1, True, "answered")
    assert _upload(world, up.id).state == "done"


def test_routing_twice_sends_one_relay_and_one_segment(world: World) -> None:
    _push_data(world)
    up = _query(world)
    qid = up.bundle_id
    assert qid is not None
    mz, rs = _outbox(world, MZ), _outbox(world, RS)
    # a crash after the relay and the segment were written, before the state was recorded
    with world.node.session() as s:
        row = s.get(Upload, up.id)
        assert row is not None
        row.state = "accepted"
        s.add(row)
    world.ingest.process(up.id)
    assert (_outbox(world, MZ), _outbox(world, RS)) == (mz, rs)
    with world.node.session(write=False) as s:
        assert len(s.exec(select(QuerySegment)).all()) == 1
        sent = s.exec(select(AuditEvent).where(AuditEvent.action == "relay.sent")).all()
        assert len(sent) == 1


def test_relayed_persons_list_neutralises_spreadsheet_formulas(world: World) -> None:
    """CSV injection through a relay: an authorization reference a spreadsheet would run
    reaches the provider's persons list with a leading apostrophe."""
    table = PERSONS.replace(",SQ-1\n", ',"=HYPERLINK(""http://x"")"\n')
    up = _query(world, RELAYED_ONLY, table)
    assert up.bundle_id is not None and up.state == "routed", up.reason_detail
    _, out = _open(world, RS, relay_name(relay_id(up.bundle_id, "RS-JY-01")))
    refs = {r["公民身份号码"]: r["授权编号"] for r in _rows(out / "persons.csv")}
    assert refs[A] == '\'=HYPERLINK("http://x")' and refs[C] == "SQ-3"
