"""The node's main job through the real client and a real node process on 127.0.0.1.

人社 pushes a dataset for RS-SI-01 (the receipt carries its row counts); 民政 pushes a query
for the same resource with ``push --wait``; the node answers it from the dataset; ``pull``
fetches the signed result and the files on disk hold exactly the expected hits and misses.
A query for a resource the catalog does not have, or outside 民政's scope, ends ``push
--wait`` with exit code 1 and the node's reason code.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange_common.idnumber import check_character
from tests.integration.node_harness import DeptSpec, NodeHarness, wait_until, write_application
from tests.integration.test_client_node import MZ, RS, cli, init_args

pytestmark = pytest.mark.integration


def _id(body17: str) -> str:
    return body17 + check_character(body17)


HIT, MISS = _id("33010219500101001"), _id("33010219800505123")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeHarness]:
    with NodeHarness(tmp_path_factory.mktemp("query"), [DeptSpec(MZ), DeptSpec(RS)]) as h:
        yield h


def _client(node: NodeHarness, base: Path, code: str) -> Path:
    directory = base / code
    r = cli(*init_args(node, directory, code))
    assert r.exit_code == 0, r.output
    return directory


def test_data_push_then_query_answered_and_pulled(node: NodeHarness, tmp_path: Path) -> None:
    rs, mz = _client(node, tmp_path, RS), _client(node, tmp_path, MZ)
    data = tmp_path / "rs.csv"
    data.write_text(
        "公民身份号码,姓名,缴费状态,缴费基数,数据日期\n"
        f"{HIT},张三,正常缴费,3000.00,2024-01-01\n"
        f"{HIT},张三,暂停缴费,3100.00,2024-02-01\n",
        encoding="utf-8",
    )
    r = cli(
        "push", "--dir", rs, "--kind", "data", "--field", "resource=RS-SI-01",
        "--wait", "--timeout", "30", "--json", data,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["verdict"] == "accepted"
    persons = tmp_path / "persons.csv"
    persons.write_text(
        f"身份证号,姓名,户编号,授权编号\n{HIT},张三,H1,SQ-1\n{MISS},李四,H1,SQ-2\n",
        encoding="utf-8",
    )
    app = write_application(tmp_path / "app.json", 2)
    r = cli(
        "push", "--dir", mz, "--kind", "query", "--fields-json", app,
        "--wait", "--timeout", "30", "--json", persons,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    query_id = json.loads(r.stdout)["bundle_id"]

    def result() -> list[dict[str, str]]:
        r = cli("pull", "--dir", mz, "--json")
        assert r.exit_code == 0, r.output
        return [p for p in json.loads(r.stdout)["pulled"] if p.get("kind") == "result"]

    [pulled] = wait_until(result, timeout=60, what="the query's result")
    folder = Path(pulled["opened_to"])
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    assert report["query_bundle_id"] == query_id
    with (folder / "RS-SI-01-results.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["id_number"], r["status"], r["缴费状态"]) for r in rows] == [
        (HIT, "match", "暂停缴费"),  # the latest record only
        (MISS, "no_record", ""),
    ]


@pytest.mark.parametrize(
    ("resources", "business_type", "code"),
    [(("XX-NOPE",), "低保", "E_UNKNOWN_RESOURCE"), (("SW-SR-01",), "低保", "E_NOT_SHARED")],
)
def test_query_outside_the_catalog_is_refused_with_exit_1(
    node: NodeHarness, tmp_path: Path, resources: tuple[str, ...], business_type: str, code: str
) -> None:
    mz = _client(node, tmp_path, MZ)
    persons = tmp_path / "persons.csv"
    persons.write_text(f"身份证号,姓名,授权编号\n{HIT},张三,SQ-1\n", encoding="utf-8")
    app = write_application(
        tmp_path / "app.json", 1, resources=resources, business_type=business_type
    )
    r = cli(
        "push", "--dir", mz, "--kind", "query", "--fields-json", app,
        "--wait", "--timeout", "30", persons,
    )  # fmt: skip
    assert r.exit_code == 1, r.output
    assert code in r.stdout and "REJECTED" in r.stdout
