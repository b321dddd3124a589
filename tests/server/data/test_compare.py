"""Cross-comparison rules (定期交叉比对) on a real node home: known answers, delivery, audit,
refusals, scheduling and the CLI's error paths.

The world: 20 recipients on 民政's roster MZ-DB-01; persons 0-2 have cremation records, 3 and 4
vehicles (5 only a scrapped one), 6 real estate and a business (7 only a deregistered one);
outsiders (100+) have records too and must never be flagged. The end-to-end test runs on SQLite
and, when reachable, PostgreSQL (``store_url``).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from sqlmodel import col, select
from typer.testing import CliRunner, Result

from exchange_common.errors import InputError
from exchange_common.idnumber import check_character
from exchange_server.admin.compare_cli import compare_app
from exchange_server.data.catalog import CatalogStore
from exchange_server.data.compare import (
    ACTION_FAILED,
    ACTION_RUN,
    RETRY_AFTER,
    Schedule,
    bundle_name,
    find_rule,
    load_rules,
    next_due,
    parse_rules,
    rule_status,
    run_due,
    run_rule,
    slot_for,
    stamp_of,
)
from exchange_server.data.datasets import DatasetStore
from exchange_server.spool import Spool
from exchange_server.store.audit import verify_chain
from exchange_server.store.models import AuditEvent
from pki.bundle import BundleError, open_bundle, verify
from tests.conftest import CAFixture
from tests.server.world import World, build_world

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE_CATALOG = ROOT / "config" / "catalog.example.toml"
EXAMPLE_RULES = ROOT / "config" / "rules.example.toml"

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹"

EXTRA_RULES = """
[[rule]]
name = "with-tax"
title = "火化与纳税比对"
owner = "MZ330100"
roster = "MZ-DB-01"
targets = ["MZ-BZ-01", "SW-SR-01"]
business_type = "复核"
schedule = "manual"

[[rule]]
name = "tax-only"
title = "纳税比对"
owner = "MZ330100"
roster = "MZ-DB-01"
targets = ["SW-SR-01"]
business_type = "复核"
schedule = "manual"

[[rule]]
name = "stranger"
title = "未注册部门"
owner = "MZ330199"
roster = "MZ-DB-01"
targets = ["MZ-BZ-01"]
business_type = "复核"
schedule = "manual"

[[rule]]
name = "housing-fund"
title = "公积金比对"
owner = "MZ330100"
roster = "MZ-DB-01"
targets = ["GJJ-JC-01"]
business_type = "复核"
every_days = 3
"""


def ident(n: int) -> str:
    """A valid GB 11643 number for person ``n`` (born 1940-01-01 + n days)."""
    born = dt.date(1940, 1, 1) + dt.timedelta(days=n)
    body = f"330102{born:%Y%m%d}{n % 1000:03d}"
    return body + check_character(body)


def name_of(n: int) -> str:
    return SURNAMES[n % len(SURNAMES)] + "测" + "试甲乙丙丁"[n % 5]


def died(n: int) -> str:
    return f"2026-10-{n % 9 + 1:02d}"


def cremated(n: int) -> str:
    return f"2026-10-{n % 9 + 3:02d}"


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


ROSTER = list(range(20))
DECEASED = {0, 1, 2}
VEHICLES = {3, 4}
PROPERTY = {6}


def _tables(tmp: Path) -> dict[str, Path]:
    """The CSV each provider pushes, with the known answers above."""
    tmp.mkdir(parents=True, exist_ok=True)
    roster = write_csv(
        tmp / "roster.csv",
        ["公民身份号码", "姓名", "户编号", "救助类别", "保障金额", "认定日期", "行政区划代码"],
        [
            [ident(n).lower(), name_of(n), f"H{n // 2:04d}", ["低保", "特困", "低保边缘"][n % 3],
             f"{800 + n}.50", "2025-03-01", "330102"]
            for n in ROSTER
        ],
    )  # fmt: skip
    cremation = write_csv(
        tmp / "cremation.csv",
        ["公民身份号码", "姓名", "死亡日期", "火化日期", "殡仪馆名称"],
        [[ident(n), name_of(n), died(n), cremated(n), "杭州殡仪馆"]
         for n in [*sorted(DECEASED), 100, 101]],
    )  # fmt: skip
    vehicles = write_csv(
        tmp / "vehicles.csv",
        ["公民身份号码", "姓名", "号牌号码", "车辆类型", "品牌型号", "初次登记日期", "机动车状态", "登记日期"],
        [
            [ident(3), name_of(3), "浙A12345", "小型轿车", "大众", "2019-05-01", "正常", "2026-09-30"],
            [ident(3), name_of(3), "浙A12345", "小型轿车", "大众", "2019-05-01", "正常", "2026-10-31"],
            [ident(4), name_of(4), "浙A54321", "二轮摩托车", "雅马哈", "2021-01-01", "正常", "2026-10-31"],
            [ident(5), name_of(5), "浙A00001", "三轮汽车", "五菱", "2001-01-01", "报废", "2026-10-31"],
            [ident(102), name_of(102), "浙A99999", "小型轿车", "丰田", "2020-01-01", "正常", "2026-10-31"],
        ],
    )  # fmt: skip
    estate = write_csv(
        tmp / "estate.csv",
        ["权利人证件号码", "权利人名称", "不动产单元号", "坐落", "建筑面积", "规划用途", "登簿日期"],
        [
            [ident(6), name_of(6), "330102001001GB00001F00010001", "上城区清波街道1号", "89.5", "住宅", "2020-06-01"],
            [ident(103), name_of(103), "330102001001GB00002F00010001", "上城区清波街道2号", "60", "住宅", "2020-06-01"],
        ],
    )  # fmt: skip
    business = write_csv(
        tmp / "business.csv",
        ["投资人证件号码", "投资人姓名", "统一社会信用代码", "企业名称", "市场主体类型", "注册资本", "登记状态", "成立日期"],
        [
            [ident(6), name_of(6), "92330102MA2XXXXX1A", "杭州清波小吃店", "个体工商户", "50000", "存续", "2022-01-01"],
            [ident(7), name_of(7), "92330102MA2XXXXX2B", "杭州某某商行", "个体工商户", "10000", "注销", "2018-01-01"],
        ],
    )  # fmt: skip
    return {
        "MZ-DB-01": roster,
        "MZ-BZ-01": cremation,
        "GA-CL-01": vehicles,
        "ZJ-BDC-01": estate,
        "SJ-QY-01": business,
    }


def push(world: World, resource: str, table: Path) -> None:
    """Store ``table`` as the current data of ``resource`` on the node."""
    _, catalog = CatalogStore.for_home(world.node.config.home).load()
    res = catalog.resource(resource)
    assert res is not None
    work = world.tmp / f"ingest-{uuid.uuid4().hex}"
    work.mkdir()
    report = DatasetStore(world.node).ingest(
        res,
        table,
        bundle_id=str(uuid.uuid4()),
        provider=res.provider,
        mode="full",
        catalog_version=1,
        work=work,
        now=dt.datetime.now(dt.UTC),
    )
    assert report.rejected == 0, report.rejects_by_reason


def setup_node(world: World, *, data: bool = True, skip: tuple[str, ...] = ()) -> None:
    """Publish the example catalog, install example + test rules, push the providers' data."""
    home = world.node.config.home
    CatalogStore.for_home(home).publish(EXAMPLE_CATALOG)
    (home / "rules.toml").write_text(
        EXAMPLE_RULES.read_text(encoding="utf-8") + EXTRA_RULES, encoding="utf-8"
    )
    if data:
        for resource, table in _tables(world.tmp / "tables").items():
            if resource not in skip:
                push(world, resource, table)


def rules(world: World) -> list:  # type: ignore[type-arg]
    return load_rules(world.node.config.home / "rules.toml")


def open_as(world: World, dept: str, bundle: Path) -> dict[str, Path]:
    issued = world.depts[dept]
    assert issued.key is not None
    out = world.tmp / f"open-{uuid.uuid4().hex}"
    opened = open_bundle(
        bundle,
        out,
        recipient_key=issued.key,
        recipient_cert=issued.certificate,
        trust=world.node.trust(),
        now=dt.datetime.now(dt.UTC),
    )
    return {p.name: p for p in opened.paths}


def flagged_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def run_events(world: World, action: str = ACTION_RUN) -> list[AuditEvent]:
    with world.node.session(write=False) as s:
        return list(
            s.exec(
                select(AuditEvent).where(AuditEvent.action == action).order_by(col(AuditEvent.seq))
            )
        )


def no_personal_data(text: str) -> None:
    """No ID number (any case) and no name of anyone in the test data appears in ``text``."""
    for n in [*ROSTER, 100, 101, 102, 103]:
        assert ident(n) not in text.upper()
        assert name_of(n) not in text


@pytest.fixture
def world(tmp_path: Path, test_ca: CAFixture) -> World:
    return build_world(tmp_path, test_ca)


# ----------------------------------------------------------------------------- the rules file


def test_example_rules_parse() -> None:
    example = load_rules(EXAMPLE_RULES)
    assert [r.name for r in example] == ["deceased-recipients", "recipient-assets"]
    assets = find_rule(example, "recipient-assets")
    assert assets.targets == ("GA-CL-01", "ZJ-BDC-01", "SJ-QY-01")
    assert str(assets.schedule) == "monthly" and assets.owner == "MZ330100"
    assert {(e.target, e.item) for e in assets.excludes} == {
        ("GA-CL-01", "机动车状态"),
        ("SJ-QY-01", "登记状态"),
    }


GOOD = """
[[rule]]
name = "r"
title = "t"
owner = "MZ330100"
roster = "MZ-DB-01"
targets = ["MZ-BZ-01"]
business_type = "复核"
schedule = "daily"
"""


DAILY = 'schedule = "daily"'
EXCLUDE = '\n[[rule.exclude]]\ntarget = "{target}"\nitem = "x"\n{key} = ["y"]\n'


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (('schedule = "daily"', 'schedule = "daily"\nshedule_hour = 3'), "shedule_hour"),
        (("[[rule]]", "colour = 1\n[[rule]]"), "colour"),
        (('schedule = "daily"', 'schedule = "hourly"'), "hourly"),
        (('schedule = "daily"', 'schedule = "daily"\nevery_days = 2'), "exactly one"),
        (('schedule = "daily"', "every_days = 0"), "every_days"),
        (('name = "r"', 'name = "../evil"'), "name"),
        (('owner = "MZ330100"', 'owner = "MZ/33"'), "MZ/33"),
        (('targets = ["MZ-BZ-01"]', "targets = []"), "targets"),
        (('targets = ["MZ-BZ-01"]', 'targets = ["MZ-BZ-01", "MZ-BZ-01"]'), "twice"),
        (('targets = ["MZ-BZ-01"]', 'targets = ["MZ-DB-01"]'), "roster"),
        (('title = "t"', 'title = "t"\ntime_range = "2026/13/01"'), "no such date"),
        (('title = "t"', ""), "title"),
        ((DAILY, DAILY + EXCLUDE.format(target="GA-CL-01", key="values")), "GA-CL-01"),
        ((DAILY, DAILY + EXCLUDE.format(target="MZ-BZ-01", key="value")), "value"),
        (("[[rule]]", "[[rule]"), "TOML"),
    ],
)
def test_bad_rules_files_are_refused_naming_the_problem(
    change: tuple[str, str], needle: str
) -> None:
    assert parse_rules(GOOD)[0].name == "r"
    with pytest.raises(InputError) as e:
        parse_rules(GOOD.replace(*change, 1), source="rules.toml")
    assert e.value.code == "E_RULES"
    assert needle in e.value.message


def test_duplicate_rule_names_are_refused() -> None:
    with pytest.raises(InputError, match="twice") as e:
        parse_rules(GOOD + GOOD)
    assert e.value.code == "E_RULES"


def test_unknown_rule_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError) as e:
        find_rule(parse_rules(GOOD), "nope")
    assert e.value.code == "E_UNKNOWN_RULE" and "r" in e.value.message
    with pytest.raises(InputError) as e:
        load_rules(tmp_path / "rules.toml")
    assert e.value.code == "E_RULES"
    assert load_rules(tmp_path / "rules.toml", missing_ok=True) == []


# ----------------------------------------------------------------------------- schedule (pure)

T = dt.datetime(2026, 11, 18, 9, 30, tzinfo=dt.UTC)  # a Wednesday


def test_calendar_schedules_are_due_once_per_period() -> None:
    daily, weekly, monthly = Schedule("daily"), Schedule("weekly"), Schedule("monthly")
    assert next_due(daily, None, now=T) == T  # never ran: due now
    assert next_due(daily, T, now=T) == dt.datetime(2026, 11, 19, tzinfo=dt.UTC)
    assert next_due(weekly, T, now=T) == dt.datetime(2026, 11, 23, tzinfo=dt.UTC)  # Monday
    assert next_due(monthly, T, now=T) == dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    dec = dt.datetime(2026, 12, 31, 23, 59, tzinfo=dt.UTC)
    assert next_due(monthly, dec, now=dec) == dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    # a run late in the period does not push the next one back
    late = dt.datetime(2026, 11, 18, 23, 0, tzinfo=dt.UTC)
    assert next_due(daily, late, now=late) == dt.datetime(2026, 11, 19, tzinfo=dt.UTC)
    # other time zones are read as the UTC instant they are
    cst = dt.timezone(dt.timedelta(hours=8))
    assert next_due(daily, T.astimezone(cst), now=T) == dt.datetime(2026, 11, 19, tzinfo=dt.UTC)
    assert next_due(Schedule("manual"), T, now=T) is None


def test_every_days_failures_and_slots() -> None:
    every3 = Schedule("every_days", 3)
    assert next_due(every3, T, now=T) == T + dt.timedelta(days=3)
    # a failure after the last run waits RETRY_AFTER; one before it does not count
    fail = T + dt.timedelta(days=4)
    assert next_due(every3, T, now=fail, last_failure=fail) == fail + RETRY_AFTER
    earlier = T - dt.timedelta(days=1)
    assert next_due(every3, T, now=fail, last_failure=earlier) == T + dt.timedelta(days=3)
    assert next_due(Schedule("daily"), None, now=T, last_failure=T) == T + RETRY_AFTER
    # slots: the same stamp for every attempt within a period
    assert slot_for(Schedule("daily"), None, now=T) == dt.datetime(2026, 11, 18, tzinfo=dt.UTC)
    assert slot_for(Schedule("weekly"), T, now=T) == dt.datetime(2026, 11, 16, tzinfo=dt.UTC)
    assert slot_for(Schedule("monthly"), None, now=T) == dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    assert slot_for(every3, T, now=fail) == T + dt.timedelta(days=3)
    assert slot_for(every3, None, now=T) == dt.datetime(2026, 11, 18, tzinfo=dt.UTC)
    assert stamp_of(T) == "20261118T093000Z"
    assert bundle_name("r", stamp_of(T)) == "compare-r-20261118T093000Z.bundle"


# ----------------------------------------------------------------------------- runs


@pytest.fixture
def store_world(tmp_path: Path, test_ca: CAFixture, store_url: str) -> World:
    return build_world(tmp_path, test_ca, store_url)


def test_flagged_lists_are_exact_signed_for_the_owner_and_audited(
    store_world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world = store_world
    setup_node(world)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    caplog.set_level(logging.DEBUG)

    # deceased recipients: exactly persons 0-2, with their death and cremation dates
    result = run_rule(world.node, find_rule(rules(world), "deceased-recipients"), now=now)
    assert result.written and result.roster_persons == 20
    assert (result.flagged_persons, result.records) == (3, 3)
    assert result.bundle == Spool(world.node.config.path("spool")).outbox("MZ330100") / bundle_name(
        "deceased-recipients", stamp_of(now)
    )
    vb = verify(result.bundle, world.node.trust(), now=now)
    assert vb.sender.code == "NODE01" and vb.header.kind.value == "result"
    files = open_as(world, "MZ330100", result.bundle)
    assert sorted(files) == ["flagged.csv", "summary.json"]
    rows = flagged_rows(files["flagged.csv"])
    assert [r["公民身份号码"] for r in rows] == sorted(ident(n) for n in DECEASED)
    by_id = {r["公民身份号码"]: r for r in rows}
    for n in DECEASED:
        row = by_id[ident(n)]
        assert row["姓名"] == name_of(n) and row["记录.姓名"] == name_of(n)
        assert row["记录.死亡日期"] == died(n)
        assert row["记录.火化日期"] == cremated(n)
        assert row["比对资源"] == "MZ-BZ-01" and row["资源名称"] == "火化信息"
        assert row["户编号"] == f"H{n // 2:04d}" and row["保障金额"] == f"{800 + n}.50"
    summary = json.loads(files["summary.json"].read_text(encoding="utf-8"))
    assert summary["catalog_version"] == 1 and summary["refused"] == []
    assert summary["dataset_versions"] == {"MZ-DB-01": [1], "MZ-BZ-01": [1]}
    assert summary["targets"][0]["flagged_persons"] == 3

    # the bundle opens for the owner only
    with pytest.raises(BundleError) as e:
        open_as(world, "RS330100", result.bundle)
    assert e.value.code == "E_RECIPIENT"

    # assets: vehicles 3 and 4 (scrapped 5 excluded; 3's latest snapshot only), 6's house and
    # shop (7's deregistered shop excluded); only the vehicle items 民政 may see
    assets = run_rule(world.node, find_rule(rules(world), "recipient-assets"), now=now)
    assert (assets.flagged_persons, assets.records) == (3, 4)
    per = {t.resource: t for t in assets.targets}
    assert (per["GA-CL-01"].flagged_persons, per["GA-CL-01"].records) == (2, 2)
    assert per["GA-CL-01"].excluded_records == 1
    assert (per["ZJ-BDC-01"].flagged_persons, per["ZJ-BDC-01"].records) == (1, 1)
    assert (per["SJ-QY-01"].records, per["SJ-QY-01"].excluded_records) == (1, 1)
    assert "号牌号码" not in per["GA-CL-01"].items
    files = open_as(world, "MZ330100", assets.bundle)
    rows = flagged_rows(files["flagged.csv"])
    assert {(r["比对资源"], r["公民身份号码"]) for r in rows} == {
        ("GA-CL-01", ident(3)),
        ("GA-CL-01", ident(4)),
        ("ZJ-BDC-01", ident(6)),
        ("SJ-QY-01", ident(6)),
    }
    header = list(rows[0])
    assert "记录.车辆类型" in header and "记录.坐落" in header and "记录.企业名称" in header
    assert "记录.号牌号码" not in header and "记录.品牌型号" not in header
    car3 = next(r for r in rows if r["公民身份号码"] == ident(3))
    assert car3["记录.登记日期"] == "2026-10-31" and car3["记录.坐落"] == ""

    # audit: one event per run, counts and the bundle id only; the chain verifies
    events = run_events(world)
    assert [e.subject for e in events] == ["deceased-recipients", "recipient-assets"]
    detail = json.loads(events[0].detail)
    assert detail["bundle_id"] == result.bundle_id and detail["flagged_persons"] == 3
    for ev in events:
        no_personal_data(ev.detail)
    no_personal_data(caplog.text)

    # a rerun with the same stamp writes and audits nothing more
    before = result.bundle.read_bytes()
    again = run_rule(world.node, find_rule(rules(world), "deceased-recipients"), now=now)
    assert not again.written and again.bundle == result.bundle
    assert (again.flagged_persons, again.records) == (3, 3)
    assert result.bundle.read_bytes() == before
    assert len(run_events(world)) == 2
    outbox = result.bundle.parent
    assert len(list(outbox.glob("compare-deceased-recipients-*.bundle"))) == 1
    work = Spool(world.node.config.path("spool")).root / "work"
    assert not work.exists() or not any(work.iterdir())  # no plaintext left behind
    with world.node.session() as s:
        assert verify_chain(s) >= 4


def test_a_delivered_but_unaudited_run_is_audited_once_and_not_resent(world: World) -> None:
    setup_node(world)
    now = dt.datetime.now(dt.UTC)
    rule = find_rule(rules(world), "deceased-recipients")
    # a crash after delivery, before the audit: the bundle is there, the event is not
    outbox = Spool(world.node.config.path("spool")).outbox("MZ330100")
    placed = outbox / bundle_name(rule.name, stamp_of(now))
    placed.write_bytes(b"delivered before the crash")
    result = run_rule(world.node, rule, now=now)
    assert not result.written and placed.read_bytes() == b"delivered before the crash"
    assert len(run_events(world)) == 1
    run_rule(world.node, rule, now=now)
    assert len(run_events(world)) == 1


def test_a_target_the_owner_may_not_see_is_reported_refused(world: World) -> None:
    setup_node(world)
    now = dt.datetime.now(dt.UTC)
    result = run_rule(world.node, find_rule(rules(world), "with-tax"), now=now)
    assert [(t.resource, t.allowed, t.reason) for t in result.targets] == [
        ("MZ-BZ-01", True, None),
        ("SW-SR-01", False, "E_NOT_SHARED"),
    ]
    assert result.flagged_persons == 3
    summary = json.loads(open_as(world, "MZ330100", result.bundle)["summary.json"].read_text())
    assert summary["refused"] == [
        {
            "resource": "SW-SR-01",
            "allowed": False,
            "reason": "E_NOT_SHARED",
            "message": "SW-SR-01 is not shared (不予共享)",
        }
    ]
    assert json.loads(run_events(world)[0].detail)["targets"][1]["reason"] == "E_NOT_SHARED"
    # every target refused: nothing to deliver, a clear error
    with pytest.raises(InputError) as e:
        run_rule(world.node, find_rule(rules(world), "tax-only"), now=now)
    assert e.value.code == "E_REFUSED" and "SW-SR-01: E_NOT_SHARED" in e.value.message


@pytest.mark.parametrize("missing", ["MZ-DB-01", "MZ-BZ-01"])
def test_missing_data_fails_the_run_clearly_and_is_audited(world: World, missing: str) -> None:
    setup_node(world, skip=(missing,))
    now = dt.datetime.now(dt.UTC)
    with pytest.raises(InputError) as e:
        run_rule(world.node, find_rule(rules(world), "deceased-recipients"), now=now)
    assert e.value.code == "E_NO_DATA" and missing in e.value.message
    failed = run_events(world, ACTION_FAILED)
    assert [json.loads(f.detail)["code"] for f in failed] == ["E_NO_DATA"]
    assert not list(Spool(world.node.config.path("spool")).outbox("MZ330100").glob("compare-*"))


def test_unregistered_owner_is_refused(world: World) -> None:
    setup_node(world, data=False)
    with pytest.raises(InputError) as e:
        run_rule(world.node, find_rule(rules(world), "stranger"), now=dt.datetime.now(dt.UTC))
    assert e.value.code == "E_UNKNOWN_DEPT" and "MZ330199" in e.value.message


# ----------------------------------------------------------------------------- schedule (node)


def test_due_runs_each_rule_once_per_period_and_retries_failures_later(world: World) -> None:
    setup_node(world)
    all_rules = rules(world)
    day = dt.datetime.now(dt.UTC).replace(hour=1, minute=0, second=0, microsecond=0)

    first = run_due(world.node, all_rules, now=day)
    # manual rules never run by themselves; the housing-fund rule has no data yet
    assert {o.rule for o in first} == {"deceased-recipients", "recipient-assets", "housing-fund"}
    ok = {o.rule: o.result for o in first if o.result is not None}
    assert ok["deceased-recipients"] is not None
    assert ok["deceased-recipients"].stamp == stamp_of(day.replace(hour=0))  # the period's start
    errors = {o.rule: o.error for o in first if o.error is not None}
    assert errors["housing-fund"] is not None and errors["housing-fund"].code == "E_NO_DATA"

    # later the same day: nothing is due; the failed rule waits RETRY_AFTER
    assert run_due(world.node, all_rules, now=day + dt.timedelta(minutes=30)) == []
    status = {s.rule.name: s for s in rule_status(world.node, all_rules, now=day)}
    assert status["deceased-recipients"].next_due == day.replace(hour=0) + dt.timedelta(days=1)
    assert status["housing-fund"].last_failure_code == "E_NO_DATA"
    assert status["housing-fund"].next_due == day + RETRY_AFTER
    assert status["with-tax"].next_due is None and not status["with-tax"].due

    # after the retry delay the failed rule is tried again (and fails again, audited)
    retry = run_due(world.node, all_rules, now=day + RETRY_AFTER + dt.timedelta(minutes=1))
    assert [o.rule for o in retry] == ["housing-fund"]
    assert len(run_events(world, ACTION_FAILED)) == 2

    # next day: the daily rule is due again, the monthly one only if the month turned
    tomorrow = day + dt.timedelta(days=1)
    again = {o.rule for o in run_due(world.node, all_rules, now=tomorrow) if o.result}
    assert "deceased-recipients" in again
    assert ("recipient-assets" in again) == (tomorrow.month != day.month)
    with world.node.session() as s:
        verify_chain(s)


def test_a_disabled_rule_is_not_due_but_runs_on_demand(world: World) -> None:
    setup_node(world)
    rule = parse_rules(GOOD.replace('schedule = "daily"', 'schedule = "daily"\nenabled = false'))
    now = dt.datetime.now(dt.UTC)
    assert rule_status(world.node, rule, now=now)[0].due is False
    assert run_due(world.node, rule, now=now) == []


# ----------------------------------------------------------------------------- CLI

cli = typer.Typer()
cli.add_typer(compare_app, name="compare")


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, ["compare", *[str(a) for a in args]])


def assert_error(result: Result, exit_code: int, code: str) -> str:
    assert result.exit_code == exit_code, (result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert errors[0].endswith(f"({code})"), errors[0]
    assert "Traceback" not in result.stderr
    return errors[0]


@pytest.fixture
def cli_world(world: World) -> Iterator[World]:
    setup_node(world)
    yield world


def test_cli_run_list_and_due(cli_world: World) -> None:
    home = cli_world.node.config.home
    res = invoke("run", "deceased-recipients", "--home", home)
    assert res.exit_code == 0, res.output
    assert "3 of 20 roster person(s) flagged in 3 record(s)" in res.stdout
    no_personal_data(res.output)

    res = invoke("run", "with-tax", "--home", home, "--json", "--at", "2026-11-22T08:00:00Z")
    assert res.exit_code == 0, res.output
    body = json.loads(res.stdout)
    assert body["stamp"] == "20261122T080000Z" and body["written"] is True
    assert body["targets"][1]["reason"] == "E_NOT_SHARED"
    res = invoke("run", "with-tax", "--home", home, "--json", "--at", "2026-11-22T08:00:00Z")
    assert json.loads(res.stdout)["written"] is False

    res = invoke("list", "--home", home, "--json")
    assert res.exit_code == 0, res.output
    listed = {r["rule"]: r for r in json.loads(res.stdout)}
    assert listed["deceased-recipients"]["due"] is False
    assert listed["deceased-recipients"]["last_flagged"] == 3
    assert listed["recipient-assets"]["due"] is True
    res = invoke("list", "--home", home)
    assert res.exit_code == 0 and "recipient-assets" in res.stdout and "on demand" in res.stdout

    res = invoke("due", "--home", home)
    # recipient-assets delivered; housing-fund has no data: audited, exit code of the failure
    assert res.exit_code == 3, res.output
    assert "recipient-assets: 3 of 20" in res.stdout
    assert "housing-fund" in res.stderr and "E_NO_DATA" in res.stderr
    no_personal_data(res.output)


def test_cli_due_without_rules_file_does_nothing(world: World) -> None:
    res = invoke("due", "--home", world.node.config.home)
    assert res.exit_code == 0 and "no rule is due" in res.stdout


def test_cli_error_paths(cli_world: World, tmp_path: Path) -> None:
    home = cli_world.node.config.home
    line = assert_error(invoke("run", "nope", "--home", home), 3, "E_UNKNOWN_RULE")
    assert "deceased-recipients" in line
    assert_error(invoke("run", "stranger", "--home", home), 3, "E_UNKNOWN_DEPT")
    assert_error(invoke("run", "tax-only", "--home", home), 3, "E_REFUSED")
    assert_error(invoke("run", "housing-fund", "--home", home), 3, "E_NO_DATA")
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace('schedule = "daily"', 'schedule = "daily"\nowner_name = "x"'))
    line = assert_error(invoke("run", "r", "--home", home, "--rules", bad), 3, "E_RULES")
    assert "owner_name" in line
    assert_error(invoke("list", "--home", home, "--rules", tmp_path / "none.toml"), 3, "E_RULES")
    assert_error(invoke("run", "with-tax", "--home", home, "--at", "tomorrow"), 3, "E_INPUT")
    shutil.rmtree(home / "catalog")
    assert_error(invoke("run", "deceased-recipients", "--home", home), 3, "E_NOT_FOUND")
