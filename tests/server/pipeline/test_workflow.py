"""The node's workflow: formal review, dataset ingest and query answers, through the pipeline.

Every test goes through the pipeline :class:`Runner` with the :class:`Workflow` router on a real node home
(SQLite, and PostgreSQL when reachable), with the example catalog published.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import threading
from dataclasses import replace
from pathlib import Path

import duckdb
import pytest
from sqlmodel import select

from exchange_common.idnumber import check_character
from exchange_server.data.datasets import DatasetStore
from exchange_server.pipeline.queries import result_name
from exchange_server.pipeline.workflow import Workflow
from exchange_server.store.audit import verify_chain
from exchange_server.store.models import AuditEvent, DatasetVersion, Upload
from pki.bundle import open_bundle
from tests.conftest import CAFixture
from tests.server.world import World, build_world

CATALOG = Path(__file__).resolve().parents[3] / "config" / "catalog.example.toml"
MZ, RS = "MZ330100", "RS330100"


def _id(body17: str, *, lower: bool = False) -> str:
    number = body17 + check_character(body17)
    return number.lower() if lower else number


A, B, C = _id("33010219500101001"), _id("11010519491231002"), _id("33010219800505123")
# B ends in X: the query lists it with a lower-case x, the dataset with an upper-case X
assert B.endswith("X")
HEADER = "公民身份号码,姓名,险种类型,缴费状态,缴费基数,待遇领取状态,待遇领取金额,数据日期\n"
DATA = (
    HEADER
    + f"{A},张三,基本养老保险,正常缴费,3000.00,未领取,0,2024-01-01\n"
    + f"{A},张三,基本养老保险,正常缴费,3200.50,未领取,0,2024-03-01\n"
    + f"{B},欧阳娜娜,基本养老保险,终止缴费,0,正常领取,2100.25,2024-03-01\n"
    + "33010219500101001Y,坏号,基本养老保险,正常缴费,1,未领取,0,2024-03-01\n"
)


@pytest.fixture
def world(catalog_world: World) -> World:
    """The test world with the example catalog published and the Workflow as router."""
    return catalog_world


def _upload(world: World, upload_id: str) -> Upload:
    with world.node.session(write=False) as s:
        row = s.get(Upload, upload_id)
        assert row is not None
        return row.model_copy()


def _push_data(world: World, sender: str = RS, body: str = DATA, **fields: object) -> Upload:
    path = world.seal(
        sender,
        body.encode(),
        kind="data",
        fields={"resource": "RS-SI-01", "mode": "full", **fields},
    )
    upload_id = world.upload(sender, path)
    world.ingest.process(upload_id)
    return _upload(world, upload_id)


def _receipt(world: World, up: Upload, dept: str) -> dict[str, object]:
    assert up.receipt_name is not None
    issued = world.depts[dept]
    assert issued.key is not None
    out = world.tmp / f"opened-{up.id}"
    opened = open_bundle(
        world.ingest.spool.outbox(dept) / up.receipt_name,
        out,
        recipient_key=issued.key,
        recipient_cert=issued.certificate,
        trust=world.node.trust(),
        now=dt.datetime.now(dt.UTC),
    )
    return dict(opened.manifest.fields)


APPLICATION: dict[str, object] = {
    "business_type": "低保",
    "purpose": "最低生活保障家庭经济状况核对",
    "persons": 4,
    "resources": ["RS-SI-01"],
}
PERSONS = (
    "身份证号,姓名,户编号,授权编号\n"
    f"{A},张三,H1,SQ-1\n"
    f"{B.lower()},欧阳娜娜,H1,SQ-2\n"
    f"{C},李四,H2,SQ-3\n"
    f"{A},张三,H1,SQ-1\n"
)


def _push_query(world: World, table: str = PERSONS, sender: str = MZ, **changes: object) -> Upload:
    fields = {**APPLICATION, **changes}
    path = world.seal(sender, table.encode(), kind="query", fields=fields, member="persons.csv")
    upload_id = world.upload(sender, path)
    world.ingest.process(upload_id)
    return _upload(world, upload_id)


def _open_result(world: World, up: Upload, dept: str = MZ) -> Path:
    issued = world.depts[dept]
    assert issued.key is not None and up.bundle_id is not None
    out = world.tmp / f"result-{up.id}"
    open_bundle(
        world.ingest.spool.outbox(dept) / result_name(up.bundle_id),
        out,
        recipient_key=issued.key,
        recipient_cert=issued.certificate,
        trust=world.node.trust(),
        now=dt.datetime.now(dt.UTC),
    )
    return out


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_data_push_is_stored_with_counts_and_rejects_in_the_receipt(world: World) -> None:
    up = _push_data(world)
    assert up.state == "done"
    fields = _receipt(world, up, RS)
    assert fields["verdict"] == "accepted"
    details = fields["details"]
    assert isinstance(details, dict)
    ds = details["dataset"]
    assert (ds["rows"], ds["stored"], ds["rejected"], ds["version"]) == (4, 3, 1, 1)
    assert ds["rejects_by_reason"] == {"E_ID:公民身份号码": 1}
    assert "33010219500101001Y" not in json.dumps(fields, ensure_ascii=False)
    assert [v.rows for v in DatasetStore(world.node).versions("RS-SI-01")] == [3]
    assert not any((world.ingest.spool.root / "work").iterdir())  # no plaintext left


def test_data_push_for_someone_elses_resource_is_refused_and_nothing_stored(world: World) -> None:
    up = _push_data(world, sender=MZ)
    assert (up.state, up.reason_code) == ("rejected", "E_PROVIDER")
    assert _receipt(world, up, MZ)["reason_code"] == "E_PROVIDER"
    with world.node.session(write=False) as s:
        assert s.exec(select(DatasetVersion)).all() == []


def test_data_push_with_unknown_column_is_refused(world: World) -> None:
    up = _push_data(world, body="公民身份号码,工资\n" + f"{A},1\n")
    assert (up.state, up.reason_code) == ("rejected", "E_SCHEMA")


def test_query_is_answered_from_the_dataset_with_hits_misses_and_households(world: World) -> None:
    _push_data(world)
    up = _push_query(world)
    assert up.state == "done", up.reason_detail
    out = _open_result(world, up)
    rows = _rows(out / "RS-SI-01-results.csv")
    by_id = {}
    for r in rows:
        by_id.setdefault(r["id_number"], []).append(r)
    # A: listed twice, matched once, latest record only; B: lower-case x matches; C: no record
    assert [(r["status"], r["缴费基数"], r["数据日期"]) for r in by_id[A]] == [
        ("match", "3200.50", "2024-03-01")
    ]
    assert by_id[B][0]["status"] == "match" and by_id[B][0]["待遇领取金额"] == "2100.25"
    assert [r["status"] for r in by_id[C]] == ["no_record"]
    households = {r["household_id"]: r for r in _rows(out / "RS-SI-01-households.csv")}
    assert households["H1"]["persons"] == "2" and households["H1"]["records"] == "2"
    assert households["H2"]["persons_with_records"] == "0"
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    entry = report["resources"][0]
    assert (entry["persons"], entry["duplicates"], entry["matched_persons"]) == (3, 1, 2)
    assert entry["no_record"] == 1 and entry["dataset_version"] == 1
    with world.node.session(write=False) as s:
        events = s.exec(select(AuditEvent).where(AuditEvent.action == "query.segment")).all()
        assert len(events) == 1 and A not in events[0].detail
        assert json.loads(events[0].detail)["final"] is True
        verify_chain(s)
    workflow = world.ingest.router
    assert isinstance(workflow, Workflow) and up.bundle_id is not None
    assert set(workflow.timings[up.bundle_id]) == {"open", "persons", "match:RS-SI-01", "seal"}
    assert all(v >= 0 for v in workflow.timings[up.bundle_id].values())


def test_step_timings_are_bounded_and_safe_across_worker_threads(world: World) -> None:
    workflow = Workflow(world.node, world.ingest.spool)

    def run(prefix: str) -> None:
        for i in range(400):
            with workflow._timed(f"{prefix}-{i}", "open"):
                pass

    threads = [threading.Thread(target=run, args=(p,)) for p in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(workflow.timings) == Workflow.KEEP_TIMINGS
    assert "a-0" not in workflow.timings and "b-0" not in workflow.timings
    last = list(workflow.timings)[-1]
    assert last.endswith("-399")  # the most recent are kept
    with workflow._timed(last, "open"):
        pass
    assert set(workflow.timings[last]) == {"open"}  # a repeated step adds up, one key


def test_answering_twice_writes_one_result(world: World) -> None:
    _push_data(world)
    up = _push_query(world)
    outbox = world.ingest.spool.outbox(MZ)
    before = sorted(p.name for p in outbox.iterdir())
    # a crash after the result was sealed, before the state was recorded: route again
    with world.node.session() as s:
        row = s.get(Upload, up.id)
        assert row is not None
        row.state = "accepted"
        s.add(row)
    world.ingest.process(up.id)
    assert sorted(p.name for p in outbox.iterdir()) == before
    with world.node.session(write=False) as s:
        events = s.exec(select(AuditEvent).where(AuditEvent.action == "query.segment")).all()
        assert len(events) == 1


def test_query_time_range_selects_records_within_it(world: World) -> None:
    _push_data(world)
    up = _push_query(world, resources=[{"code": "RS-SI-01", "time_range": "2024/01/01-2024/01/31"}])
    rows = _rows(_open_result(world, up) / "RS-SI-01-results.csv")
    assert [(r["id_number"], r["status"]) for r in rows if r["status"] == "match"] == [(A, "match")]


def test_scope_rule_releases_only_its_items(world: World) -> None:
    _push_data(world)
    up = _push_query(world, business_type="临时救助")  # 临时救助 sees six items of RS-SI-01
    rows = _rows(_open_result(world, up) / "RS-SI-01-results.csv")
    assert "缴费状态" in rows[0] and "缴费基数" not in rows[0] and "待遇领取金额" not in rows[0]
    asked = [{"code": "RS-SI-01", "items": ["缴费基数"]}]
    refused = _push_query(world, business_type="临时救助", resources=asked)
    assert (refused.state, refused.reason_code) == ("rejected", "E_ITEM")


def test_query_for_unpushed_resource_reports_no_data(world: World) -> None:
    up = _push_query(world, sender=RS, resources=["MZ-BZ-01"])  # unconditional sharing
    assert up.state == "done"
    report = json.loads((_open_result(world, up, RS) / "report.json").read_text("utf-8"))
    assert report["resources"][0]["state"] == "no_data"


@pytest.mark.parametrize(
    ("changes", "persons", "code"),
    [
        ({"purpose": ""}, PERSONS, "E_APPLICATION"),
        ({"persons": "four"}, PERSONS, "E_APPLICATION"),
        ({"persons": "²"}, PERSONS, "E_APPLICATION"),  # a digit to str.isdigit, not to int()
        ({"persons": 0}, PERSONS.split("\n")[0] + "\n", "E_APPLICATION"),  # nobody to check
        ({"resources": ["XX-NONE"]}, PERSONS, "E_UNKNOWN_RESOURCE"),
        ({"resources": ["SW-SR-01"]}, PERSONS, "E_NOT_SHARED"),  # sharing type none
        ({"business_type": "支出型困难"}, PERSONS, "E_SCOPE"),  # conditional, outside scope
        ({"business_type": "购房"}, PERSONS, "E_BUSINESS_TYPE"),
        ({"resources": [{"code": "RS-SI-01", "items": ["工资"]}]}, PERSONS, "E_ITEM"),
        ({"time_range": "2024/13/01"}, PERSONS, "E_TIME_RANGE"),
        ({"persons": 5}, PERSONS, "E_COUNT"),
        ({}, PERSONS.replace(C, C[:-1] + ("0" if C[-1] != "0" else "1")), "E_ID"),
        ({}, PERSONS.replace(f"{C},李四", ",李四"), "E_ID"),  # a blank ID number
        ({}, PERSONS.replace(",授权编号", ",备注"), "E_SCHEMA"),
        ({}, PERSONS.replace(f"{C},李四", f'{C},"李四'), "E_SCHEMA"),  # unclosed quote
        ({}, PERSONS.replace(",SQ-3", ",SQ-3,多余"), "E_SCHEMA"),  # a field too many
    ],
)
def test_formal_review_refuses_with_reason_code_and_answers_nothing(
    world: World, changes: dict[str, object], persons: str, code: str
) -> None:
    _push_data(world)
    up = _push_query(world, persons, **changes)
    assert (up.state, up.reason_code) == ("rejected", code), up.reason_detail
    assert _receipt(world, up, MZ)["reason_code"] == code
    assert up.bundle_id is not None
    assert not (world.ingest.spool.outbox(MZ) / result_name(up.bundle_id)).exists()
    assert not any((world.ingest.spool.root / "work").iterdir())


def test_persons_list_not_in_utf8_is_refused_with_e_encoding(world: World) -> None:
    path = world.seal(
        MZ, PERSONS.encode("gb18030"), kind="query", fields=APPLICATION, member="persons.csv"
    )
    upload_id = world.upload(MZ, path)
    world.ingest.process(upload_id)
    up = _upload(world, upload_id)
    assert (up.state, up.reason_code) == ("rejected", "E_ENCODING")
    assert "UTF-8" in (up.reason_detail or "") + str(_receipt(world, up, MZ).get("reason", ""))
    assert not any((world.ingest.spool.root / "work").iterdir())


def test_query_without_a_published_catalog_is_refused(
    tmp_path: Path, test_ca: CAFixture, store_url: str
) -> None:
    w = build_world(tmp_path, test_ca, store_url)
    w.ingest.router = Workflow(w.node, w.ingest.spool)
    up = _push_query(w)
    assert (up.state, up.reason_code) == ("rejected", "E_NO_CATALOG")


def test_catalog_publish_on_a_node_home_is_audited(world: World, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from exchange_server.admin.cli import app

    changed = tmp_path / "c.toml"
    changed.write_text(
        CATALOG.read_text(encoding="utf-8").replace("feedback_days = 7", "feedback_days = 6"),
        encoding="utf-8",
    )
    home = world.node.config.home
    r = CliRunner().invoke(app, ["catalog", "publish", "--home", str(home), str(changed)])
    assert r.exit_code == 0, r.output
    with world.node.session(write=False) as s:
        events = s.exec(select(AuditEvent).where(AuditEvent.action == "catalog.published")).all()
        assert [e.subject for e in events] == ["v2"]
        verify_chain(s)


@pytest.mark.parametrize("count", ["9" * 5000, "1" + "0" * 9, "０１", "1.0", "-3"])
def test_poison_persons_count_is_refused_and_jams_nothing(world: World, count: str) -> None:
    """A query whose 'persons' is a 5,000-digit number (Python's integer-string limit) or any
    other non-count: refused with E_APPLICATION and a signed receipt, not retried as a node
    fault; the next department's bundle goes through."""
    up = _push_query(world, persons=count)
    assert (up.state, up.reason_code) == ("rejected", "E_APPLICATION")
    assert _receipt(world, up, MZ)["reason_code"] == "E_APPLICATION"
    assert world.ingest.pending() == []
    assert _push_query(world).state == "done"


#: A person's name and ID number, put by a hostile (or careless) peer where the node expects a
#: header, a code or a date.
LEAK_NAME = "欧阳娜娜"
LEAK = f"{LEAK_NAME} {B}"


@pytest.mark.parametrize(
    ("kind", "changes", "body", "code"),
    [
        ("data", {}, f"公民身份号码,{LEAK}\n{A},1\n", "E_SCHEMA"),  # a header
        ("data", {}, f"{B},{LEAK_NAME}\n{A},张三\n", "E_SCHEMA"),  # no header line at all
        ("data", {"mode": LEAK}, DATA, "E_MODE"),
        ("query", {"resources": [LEAK]}, PERSONS, "E_UNKNOWN_RESOURCE"),
        ("query", {"business_type": LEAK}, PERSONS, "E_BUSINESS_TYPE"),
        ("query", {"resources": [{"code": "RS-SI-01", "items": [LEAK]}]}, PERSONS, "E_ITEM"),
        ("query", {"time_range": LEAK}, PERSONS, "E_TIME_RANGE"),
    ],
    ids=["header", "data-as-header", "mode", "resource", "business-type", "item", "time-range"],
)
def test_personal_data_as_a_header_or_code_is_never_echoed(
    world: World,
    caplog: pytest.LogCaptureFixture,
    kind: str,
    changes: dict[str, object],
    body: str,
    code: str,
) -> None:
    """A header name or an application field that holds a person's name and ID number is
    refused without echoing it: not in the receipt, the log, the upload record or the audit
    trail (the refusal names positions, lengths and what the catalog allows instead)."""
    caplog.set_level("DEBUG")
    up = (
        _push_data(world, body=body, **changes)
        if kind == "data"
        else _push_query(world, body, **changes)
    )
    assert (up.state, up.reason_code) == ("rejected", code), up.reason_detail
    receipt = json.dumps(_receipt(world, up, RS if kind == "data" else MZ), ensure_ascii=False)
    with world.node.session(write=False) as s:
        stored = json.dumps(
            [u.model_dump(mode="json") for u in s.exec(select(Upload))]
            + [e.model_dump(mode="json") for e in s.exec(select(AuditEvent))],
            ensure_ascii=False,
        )
    for text in (receipt, stored, caplog.text):
        assert LEAK_NAME not in text and B not in text and B.lower() not in text
    assert "not shown" in receipt or "column(s)" in receipt or "not a header" in receipt


def _identical_rows(path: Path, header: list[str], row: list[str], rows: int) -> bytes:
    """A zstd Parquet file of ``rows`` identical rows: a few kilobytes whatever ``rows`` is."""
    cols = ", ".join(f"'{v}' AS \"{h}\"" for h, v in zip(header, row, strict=True))
    duckdb.sql(
        f"COPY (SELECT {cols} FROM range({rows})) TO '{path}' "  # noqa: S608 - test constants
        "(FORMAT parquet, COMPRESSION zstd)"
    )
    return path.read_bytes()


def test_compressed_persons_bomb_is_refused_before_a_row_is_read(world: World) -> None:
    """A query whose persons table is a small Parquet file of millions of identical rows (the
    attack used 100,000,000 in 9 KB and drove the node to 7.3 GB): refused E_COUNT from the
    footer alone, before the persons step reads a row; the next query goes through."""
    body = _identical_rows(
        world.tmp / "bomb.parquet", ["身份证号", "姓名", "授权编号"], [A, "张三", "SQ-1"], 2_000_000
    )
    assert len(body) < 64 * 1024
    path = world.seal(
        MZ, body, kind="query", fields={**APPLICATION, "persons": 3}, member="persons.parquet"
    )
    upload_id = world.upload(MZ, path)
    world.ingest.process(upload_id)
    up = _upload(world, upload_id)
    assert (up.state, up.reason_code) == ("rejected", "E_COUNT")
    assert _receipt(world, up, MZ)["reason_code"] == "E_COUNT"
    router = world.ingest.router
    assert isinstance(router, Workflow) and up.bundle_id is not None
    assert "persons" not in router.timings.get(up.bundle_id, {})  # no row was read
    assert world.ingest.pending() == []
    _push_data(world)
    assert _push_query(world).state == "done"


def test_parquet_declaring_more_rows_than_the_limit_is_refused_unread(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every table a bundle carries is bounded by ``[limits] max_table_rows`` from its footer,
    before any work on its rows: a data push declaring more is refused E_LIMIT, nothing is
    stored, and the node keeps serving."""
    cfg = world.node.config
    monkeypatch.setattr(
        world.node, "config", replace(cfg, limits=replace(cfg.limits, max_table_rows=1000))
    )
    header = HEADER.strip().split(",")
    body = _identical_rows(world.tmp / "big.parquet", header, DATA.splitlines()[1].split(","), 1001)
    path = world.seal(
        RS, body, kind="data", fields={"resource": "RS-SI-01", "mode": "full"}, member="d.parquet"
    )
    upload_id = world.upload(RS, path)
    world.ingest.process(upload_id)
    up = _upload(world, upload_id)
    assert (up.state, up.reason_code) == ("rejected", "E_LIMIT")
    assert _receipt(world, up, RS)["reason_code"] == "E_LIMIT"
    with world.node.session(write=False) as s:
        assert s.exec(select(DatasetVersion)).all() == []
    assert _push_data(world).state == "done"
