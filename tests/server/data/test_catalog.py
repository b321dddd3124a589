"""The resource catalog: parsing, access control per sharing type, immutable versions, diff."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from exchange_common.catalog import (
    Catalog,
    SharingType,
    check_access,
    diff_catalogs,
    load_catalog,
    parse_catalog,
)
from exchange_common.errors import InputError
from exchange_server.admin.cli import app
from exchange_server.data.catalog import CatalogStore

EXAMPLE = Path(__file__).resolve().parents[3] / "config" / "catalog.example.toml"

SMALL = """
[catalog]
title = "测试目录"
feedback_days = 7

[[resource]]
code = "R-OPEN"
name = "火化信息"
classification = "殡葬"
provider = "MZBZ01"
format = "parquet"
update_period = "每日"
sharing_type = "unconditional"
sharing_method = "批量比对"
source_system = "殡葬系统"
security_level = 2
key_item = "公民身份号码"
time_item = "火化日期"
[[resource.item]]
name = "公民身份号码"
type = "id_number"
identifies_person = true
[[resource.item]]
name = "火化日期"
type = "date"

[[resource]]
code = "R-COND"
name = "社会保险"
classification = "人社"
provider = "RS01"
format = "parquet"
update_period = "每月"
sharing_type = "conditional"
sharing_conditions = "持授权"
sharing_method = "批量比对"
source_system = "人社系统"
security_level = 3
feedback_days = 5
key_item = "公民身份号码"
[[resource.item]]
name = "公民身份号码"
type = "id_number"
[[resource.item]]
name = "缴费状态"
type = "code"
values = ["正常缴费", "暂停缴费"]
[[resource.item]]
name = "待遇领取金额"
type = "decimal"
sensitivity = "sensitive"
[[resource.scope]]
departments = ["MZ33*"]
business_types = ["低保", "特困"]
[[resource.scope]]
departments = ["MZ33*"]
business_types = ["临时救助"]
items = ["公民身份号码", "缴费状态"]

[[resource]]
code = "R-NONE"
name = "纳税明细"
classification = "税务"
provider = "SW01"
format = "parquet"
update_period = "每年"
sharing_type = "none"
sharing_method = "不予共享"
source_system = "金税"
security_level = 4
key_item = "公民身份号码"
[[resource.item]]
name = "公民身份号码"
type = "id_number"
"""


def test_example_catalog_covers_the_required_resources() -> None:
    cat = load_catalog(EXAMPLE)
    rs = cat.resources["RS-SI-01"]
    for item in ("参保地行政区划代码", "参保单位名称", "险种类型", "缴费状态", "缴费基数"):
        assert rs.item(item) is not None
    assert rs.item("待遇领取状态") and rs.item("待遇领取金额")
    assert rs.feedback_days == 5 and cat.feedback_days == 7
    providers = {r.classification.split("/")[0] for r in cat.resources.values()}
    assert {"殡葬管理", "财产信息", "低收入人口"} <= providers
    names = " ".join(r.name for r in cat.resources.values())
    for word in ("火化", "机动车", "不动产", "市场主体", "公积金", "困难学生", "残疾人", "防返贫"):
        assert word in names
    assert {r.sharing_type for r in cat.resources.values()} == set(SharingType)


def test_defaults_and_per_resource_deadline() -> None:
    cat = parse_catalog(SMALL)
    assert cat.resources["R-OPEN"].feedback_days == 7
    assert cat.resources["R-COND"].feedback_days == 5
    assert cat.resources["R-COND"].item("缴费状态").values == ("正常缴费", "暂停缴费")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (SMALL.replace('sharing_type = "none"', 'sharing_type = "sometimes"'), "sharing_type"),
        (
            SMALL.replace(
                'key_item = "公民身份号码"\ntime_item', 'key_item = "火化日期"\ntime_item'
            ),
            "key_item",
        ),
        (SMALL.replace('code = "R-NONE"', 'code = "R-OPEN"'), "twice"),
        (SMALL.replace("security_level = 4", "security_level = 9"), "security_level"),
        (SMALL.replace('sharing_conditions = "持授权"\n', ""), "sharing_conditions"),
        (
            SMALL.replace('items = ["公民身份号码", "缴费状态"]', 'items = ["银行卡号"]'),
            "unknown items",
        ),
        (SMALL.replace('time_item = "火化日期"', 'time_item = "公民身份号码"'), "time_item"),
        ("not toml [", "TOML"),
        (
            SMALL.replace('sharing_conditions = "持授权"', 'sharing_condition = "持授权"'),
            "unknown keys",
        ),
        (
            SMALL.replace('business_types = ["低保", "特困"]', 'business_type = ["低保"]'),
            "unknown keys",
        ),
    ],
)
def test_bad_catalogs_are_refused_with_the_place(text: str, fragment: str) -> None:
    with pytest.raises(InputError) as e:
        parse_catalog(text)
    assert e.value.code == "E_CATALOG"
    assert fragment in e.value.message


# ----------------------------------------------------------------------------- access


def test_unconditional_is_open_to_every_department_and_business() -> None:
    cat = parse_catalog(SMALL)
    d = check_access(cat, "GA99", "任何业务", "R-OPEN")
    assert d.allowed and d.items == ("公民身份号码", "火化日期")
    assert check_access(cat, "GA99", "x", "R-OPEN", ["火化日期"]).items == ("火化日期",)
    bad = check_access(cat, "GA99", "x", "R-OPEN", ["死亡原因"])
    assert not bad.allowed and bad.reason == "E_ITEM"


def test_conditional_follows_scope_rules() -> None:
    cat = parse_catalog(SMALL)
    full = check_access(cat, "MZ330102", "低保", "R-COND")
    assert full.allowed and full.items == ("公民身份号码", "缴费状态", "待遇领取金额")
    part = check_access(cat, "MZ330102", "临时救助", "R-COND")
    assert part.allowed and part.items == ("公民身份号码", "缴费状态")
    # an item the admitting rule does not grant
    denied = check_access(cat, "MZ330102", "临时救助", "R-COND", ["待遇领取金额"])
    assert (denied.allowed, denied.reason) == (False, "E_ITEM")
    # wrong business type, wrong department
    assert check_access(cat, "MZ330102", "教育救助", "R-COND").reason == "E_SCOPE"
    assert check_access(cat, "MZ420625", "低保", "R-COND").reason == "E_SCOPE"
    assert check_access(cat, "GA330100", "低保", "R-COND").reason == "E_SCOPE"
    # requested items come back in catalog order, deduplicated
    d = check_access(cat, "MZ330102", "低保", "R-COND", ["待遇领取金额", "缴费状态", "缴费状态"])
    assert d.items == ("缴费状态", "待遇领取金额")


def test_not_shared_and_unknown() -> None:
    cat = parse_catalog(SMALL)
    assert check_access(cat, "MZ330102", "低保", "R-NONE").reason == "E_NOT_SHARED"
    assert check_access(cat, "MZ330102", "低保", "R-NOPE").reason == "E_UNKNOWN_RESOURCE"
    # the provider always sees its own resource
    assert check_access(cat, "SW01", "低保", "R-NONE").allowed
    assert check_access(cat, "RS01", "x", "R-COND").allowed


def test_example_catalog_access() -> None:
    cat = load_catalog(EXAMPLE)
    assert check_access(cat, "MZ330102", "低保", "RS-SI-01").allowed
    assert check_access(cat, "MZ330102", "低保", "SW-SR-01").reason == "E_NOT_SHARED"
    veh = check_access(cat, "MZ330102", "特困", "GA-CL-01", ["号牌号码"])
    assert veh.reason == "E_ITEM"


# ----------------------------------------------------------------------------- versions


def test_publish_is_versioned_idempotent_and_immutable(tmp_path: Path) -> None:
    store = CatalogStore.for_home(tmp_path)
    src = tmp_path / "c.toml"
    src.write_text(SMALL, encoding="utf-8")
    v1, created = store.publish(src)
    assert (v1.version, created) == (1, True)
    assert v1.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
    published = tmp_path / "catalog" / "v1.toml"
    assert published.read_bytes() == src.read_bytes()
    assert not published.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)

    # the same content again, even with a new comment, publishes nothing
    src.write_text("# comment\n" + SMALL, encoding="utf-8")
    again, created = store.publish(src)
    assert (again.version, created) == (1, False)

    src.write_text(SMALL.replace("feedback_days = 5", "feedback_days = 4"), encoding="utf-8")
    v2, created = store.publish(src)
    assert (v2.version, created) == (2, True)
    assert [v.version for v in store.versions()] == [1, 2]
    _, c1 = store.load(1)
    _, c2 = store.load()
    assert diff_catalogs(c1, c2) == ["~ resource R-COND: feedback_days: 5 -> 4"]

    # editing a published file is detected
    published.chmod(0o644)
    published.write_text(SMALL.replace("测试目录", "改过的目录"), encoding="utf-8")
    with pytest.raises(InputError) as e:
        store.load(1)
    assert e.value.code == "E_TAMPERED"
    assert [v.intact for v in store.versions()] == [False, True]
    with pytest.raises(InputError):
        store.load(7)


def test_tampered_latest_blocks_publishing(tmp_path: Path) -> None:
    store = CatalogStore.for_home(tmp_path)
    src = tmp_path / "c.toml"
    src.write_text(SMALL, encoding="utf-8")
    store.publish(src)
    path = tmp_path / "catalog" / "v1.toml"
    path.chmod(0o644)
    path.write_text(SMALL + "\n# x\n", encoding="utf-8")
    with pytest.raises(InputError) as e:
        store.publish(src)
    assert e.value.code == "E_TAMPERED"


def test_diff_reports_resources_and_items() -> None:
    a = parse_catalog(SMALL)
    b = parse_catalog(
        SMALL.replace('code = "R-NONE"', 'code = "R-NEW"').replace(
            'values = ["正常缴费", "暂停缴费"]', 'values = ["正常缴费"]'
        )
    )
    lines = diff_catalogs(a, b)
    assert "- resource R-NONE 纳税明细" in lines
    assert "+ resource R-NEW 纳税明细" in lines
    assert any(line.startswith("~ resource R-COND item 缴费状态") for line in lines)
    assert diff_catalogs(a, a) == []


def test_cli_publish_list_show_diff(tmp_path: Path) -> None:
    runner = CliRunner()
    home = tmp_path / "home"
    home.mkdir()
    src = tmp_path / "c.toml"
    src.write_text(SMALL, encoding="utf-8")
    r = runner.invoke(app, ["catalog", "publish", "--home", str(home), str(src)])
    assert r.exit_code == 0, r.output
    assert "v1" in r.output
    r = runner.invoke(app, ["catalog", "publish", "--home", str(home), str(src), "--json"])
    assert r.exit_code == 0 and '"created": false' in r.output
    src.write_text(SMALL.replace("feedback_days = 5", "feedback_days = 4"), encoding="utf-8")
    assert runner.invoke(app, ["catalog", "publish", "--home", str(home), str(src)]).exit_code == 0
    r = runner.invoke(app, ["catalog", "list", "--home", str(home)])
    assert r.exit_code == 0 and "v2" in r.output
    r = runner.invoke(app, ["catalog", "show", "--home", str(home), "--resource", "R-COND"])
    assert r.exit_code == 0 and "待遇领取金额" in r.output
    r = runner.invoke(app, ["catalog", "diff", "--home", str(home), "1", "2"])
    assert r.exit_code == 0 and "feedback_days: 5 -> 4" in r.output
    r = runner.invoke(app, ["catalog", "show", "--home", str(home), "--version", "9"])
    assert r.exit_code == 3 and "E_NOT_FOUND" in r.output


def test_a_store_parses_each_version_once_and_still_checks_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pipeline loads the catalog for every bundle: the parse is kept per file digest,
    while the file is read and checked against its recorded SHA-256 at every load."""
    from exchange_server.data.catalog import store as store_module

    store = CatalogStore.for_home(tmp_path)
    src = tmp_path / "c.toml"
    src.write_text(SMALL, encoding="utf-8")
    store.publish(src)
    parsed: list[str] = []
    real = store_module.parse_catalog

    def counting(text: str, *, source: str = "catalog") -> Catalog:
        parsed.append(source)
        return real(text, source=source)

    monkeypatch.setattr(store_module, "parse_catalog", counting)
    first = store.load()[1]
    assert all(store.load()[1] is first for _ in range(5))
    assert len(parsed) == 1
    published = tmp_path / "catalog" / "v1.toml"
    published.chmod(0o644)
    published.write_text(SMALL.replace("测试目录", "改过的目录"), encoding="utf-8")
    with pytest.raises(InputError) as e:
        store.load()
    assert e.value.code == "E_TAMPERED"
