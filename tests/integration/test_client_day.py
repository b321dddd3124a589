"""The department's day against a real node: what ``push --wait`` and ``wait`` say is what
the signed receipt says.

A data push the node half refuses (the department keeps no ``DIR/catalog.toml``, so the client
could check only the ID numbers) prints the rows stored and rejected by reason and exits 7; a
push the node refuses whole prints the node's explanation beside the code; a query outside the
catalog's sharing scope says why (E_SCOPE). ID numbers appear masked only, names never.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange_common.idnumber import check_character
from tests.integration.node_harness import DeptSpec, NodeHarness, write_application
from tests.integration.test_client_node import MZ, RS, cli, init_args

pytestmark = pytest.mark.integration

A = "33010219500101001" + check_character("33010219500101001")
B = "11010519491231002X"
C = "110101199003070038"
NAMES = ("张三", "李四", "王五")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeHarness]:
    with NodeHarness(tmp_path_factory.mktemp("day"), [DeptSpec(MZ), DeptSpec(RS)]) as h:
        yield h


@pytest.fixture(scope="module")
def rs(node: NodeHarness, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("rs") / "client"
    assert cli(*init_args(node, directory, RS)).exit_code == 0
    return directory


def _table(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "rs-2026-12.csv"
    path.write_text(
        "公民身份号码,姓名,险种类型,缴费基数\n" + "".join(f"{r}\n" for r in rows), "utf-8"
    )
    return path


def _private(output: str) -> list[str]:
    """Personal data found in ``output`` (it must be none)."""
    return [v for v in (A, B, C, *NAMES) if v in output]


def _push(rs: Path, table: Path, *extra: str) -> tuple[int, str]:
    r = cli("push", "--dir", rs, "--kind", "data", "--field", "resource=RS-SI-01", *extra, table)
    return r.exit_code, r.output


def test_a_partly_rejected_data_push_shows_counts_by_reason_and_exits_7(
    rs: Path, tmp_path: Path
) -> None:
    table = _table(tmp_path, f"{A},张三,基本养老保险,100.50", f"{B},李四,在职,1",
                   f"{C},王五,失业保险,很多")  # fmt: skip
    code, out = _push(rs, table, "--wait", "--timeout", "30")
    assert code == 7, out
    assert "accepted by the node, but 2 of 3 row(s) REJECTED" in out
    assert "RS-SI-01 v1 (full): 1 of 3 row(s) stored, 2 rejected" in out
    assert (
        "rejected E_CODE:险种类型: 1 row(s) — A value is not one of the allowed codes. e.g. 110105********002X"
        in out
    )
    assert (
        "rejected E_DECIMAL:缴费基数: 1 row(s) — A value is not a decimal number. e.g. 110101********0038"
        in out
    )
    assert not _private(out)


def test_json_and_wait_with_an_id_prefix_say_the_same(rs: Path, tmp_path: Path) -> None:
    table = _table(tmp_path, f"{A},张三,基本养老保险,100.50", f"{B},李四,在职,1")
    code, out = _push(rs, table, "--json")
    assert code == 0, out
    bundle_id = json.loads(out)["bundle_id"]
    r = cli("wait", "--dir", rs, bundle_id[:8], "--timeout", "30", "--json")
    assert r.exit_code == 7, r.output
    data = json.loads(r.stdout)
    assert data["bundle_id"] == bundle_id and data["outcome"] == "partly_rejected"
    assert (data["rows"], data["rows_stored"], data["rows_rejected"]) == (2, 1, 1)
    assert data["rejected_by_reason"] == {"E_CODE:险种类型": 1}
    assert data["rejected_samples"] == [{"reason": "E_CODE:险种类型", "key": "110105********002X"}]
    assert not _private(r.output)


def test_a_fully_rejected_data_push_shows_the_nodes_explanation(rs: Path, tmp_path: Path) -> None:
    table = _table(tmp_path, f"{A},张三,在职,1", f"{B},李四,在职,1")
    code, out = _push(rs, table, "--wait", "--timeout", "30")
    assert code == 1, out
    assert "REJECTED by the node: E_ROWS" in out
    assert "The table has no valid rows to store." in out
    assert "node: RS-SI-01: none of the 2 rows is valid" in out
    assert not _private(out)


def test_a_query_outside_the_sharing_scope_says_why(node: NodeHarness, tmp_path: Path) -> None:
    mz = tmp_path / "mz"
    assert cli(*init_args(node, mz, MZ)).exit_code == 0
    persons = tmp_path / "persons.csv"
    persons.write_text(f"身份证号,姓名,授权编号\n{A},张三,SQ-1\n", "utf-8")
    app = write_application(tmp_path / "app.json", 1, business_type="支出型困难")
    r = cli("push", "--dir", mz, "--kind", "query", "--fields-json", app,
            "--wait", "--timeout", "30", persons)  # fmt: skip
    assert r.exit_code == 1, r.output
    lines = r.output.splitlines()
    assert "REJECTED by the node: E_SCOPE" in lines[0]
    assert any(line.startswith("  node: ") and "RS-SI-01" in line for line in lines), r.output
    assert lines[-1].startswith("hint: ")
    assert not _private(r.output)
