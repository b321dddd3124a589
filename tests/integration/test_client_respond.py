"""A data-source department answers a query the node relayed to it: pull, then respond."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.node_harness import DeptSpec, NodeHarness
from tests.integration.test_client_node import RS, cli, init_args

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeHarness]:
    with NodeHarness(tmp_path_factory.mktemp("respond"), [DeptSpec(RS)]) as h:
        yield h


def _relay_to_rs(node: NodeHarness) -> str:
    """What the node's workflow will do: seal a relayed query (signed by the node) for 人社."""
    query_id = uuid.uuid4()
    body = "身份证号,姓名\n11010519491231002X,张三\n".encode()
    node.seal(
        RS,
        body,
        node.outbox(RS) / f"relay-{query_id}.bundle",
        kind="relay",
        member="persons.csv",
        bundle_id=query_id,
        fields={"resources": ["RS-SI-01"], "deadline_days": 5},
        from_node=True,
    )
    return str(query_id)


def test_pull_relayed_query_then_respond(node: NodeHarness, tmp_path: Path) -> None:
    client = tmp_path / "rs"
    assert cli(*init_args(node, client, RS)).exit_code == 0
    query_id = _relay_to_rs(node)
    r = cli("pull", "--dir", client, "--json")
    assert r.exit_code == 0, r.output
    [item] = json.loads(r.stdout)["pulled"]
    assert item["kind"] == "relay" and item["bundle_id"] == query_id
    answer = tmp_path / "answer.csv"
    answer.write_text("身份证号,险种类型\n11010519491231002X,基本养老\n", encoding="utf-8")
    r = cli(
        "respond",
        "--dir",
        client,
        "--to-query",
        query_id,
        "--wait",
        "--timeout",
        "30",
        "--json",
        answer,
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["kind"] == "response" and out["verdict"] == "accepted"
    [up] = [u for u in node.uploads(RS) if u.bundle_id == out["bundle_id"]]
    assert up.kind == "response" and up.state == "routed"  # waits for the query workflow


def test_respond_to_a_query_never_relayed_is_refused(node: NodeHarness, tmp_path: Path) -> None:
    client = tmp_path / "rs"
    assert cli(*init_args(node, client, RS)).exit_code == 0
    before = len(node.uploads(RS))
    answer = tmp_path / "answer.csv"
    answer.write_text("x\n1\n", encoding="utf-8")
    r = cli("respond", "--dir", client, "--to-query", str(uuid.uuid4()), answer)
    assert r.exit_code == 3 and "E_NOT_FOUND" in r.output
    assert len(node.uploads(RS)) == before
    assert not any((client / "sent").glob("*.bundle"))
