"""A relayed query end to end with real processes: 民政 asks, the node relays to 人社, 人社
pulls the relay and answers with ``exchange-client respond``, 民政 pulls the segment."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange_common.idnumber import check_character
from tests.integration.node_harness import DeptSpec, NodeHarness, write_application
from tests.integration.test_client_node import MZ, RS, cli, init_args

pytestmark = pytest.mark.integration

A = "33010219500101001" + check_character("33010219500101001")
B = "11010519491231002X"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeHarness]:
    with NodeHarness(tmp_path_factory.mktemp("respond"), [DeptSpec(MZ), DeptSpec(RS)]) as h:
        yield h


def _client(node: NodeHarness, tmp_path: Path, code: str) -> Path:
    directory = tmp_path / code
    r = cli(*init_args(node, directory, code))
    assert r.exit_code == 0, r.output
    # the department keeps the published catalog beside its configuration (docs/client-guide.md)
    (directory / "catalog.toml").write_bytes(
        (Path(__file__).resolve().parents[2] / "config" / "catalog.example.toml").read_bytes()
    )
    return directory


def _ask(mz: Path, tmp_path: Path) -> str:
    persons = tmp_path / "persons.csv"
    persons.write_text(f"身份证号,姓名,授权编号\n{A},张三,SQ-1\n{B},欧阳娜娜,SQ-2\n", "utf-8")
    app = write_application(tmp_path / "app.json", 2, ("RS-JY-01",))
    r = cli(
        "push", "--dir", mz, "--kind", "query", "--fields-json", app,
        "--wait", "--timeout", "30", "--json", persons,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    return str(json.loads(r.stdout)["bundle_id"])


def _respond(rs: Path, relay: str, answer: Path) -> tuple[int, dict[str, object]]:
    r = cli(
        "respond", "--dir", rs, "--to-query", relay, "--wait", "--timeout", "30", "--json", answer
    )  # fmt: skip
    return r.exit_code, json.loads(r.stdout) if r.stdout.strip() else {}


def test_relayed_query_is_answered_by_the_provider_and_pulled_in_segments(
    node: NodeHarness, tmp_path: Path
) -> None:
    mz, rs = _client(node, tmp_path, MZ), _client(node, tmp_path, RS)
    query = _ask(mz, tmp_path)
    # before any answer, the requester sees the routing and the deadline
    r = cli("pull", "--dir", mz, "--json")
    assert r.exit_code == 0, r.output
    r = cli("status", "--dir", mz, query, "--json")
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["state"] == "accepted, no answer yet" or info["state"] == "open"
    [res] = info["resources"]
    assert (res["resource"], res["answered_by"], res["state"]) == (
        "RS-JY-01",
        "provider",
        "pending",
    )
    # 人社 pulls the relay: only IDs and authorizations, the items asked and the deadline
    r = cli("pull", "--dir", rs, "--json")
    assert r.exit_code == 0, r.output
    [relay] = [p for p in json.loads(r.stdout)["pulled"] if p["kind"] == "relay"]
    assert "answer by" in relay["summary"]
    relay_id = relay["bundle_id"]
    assert f"respond --to-query {relay_id} FILE" in relay["summary"]  # the id, ready to copy
    opened = Path(relay["opened_to"]) / "persons.csv"
    assert opened.read_text("utf-8").splitlines()[0] == "公民身份号码,授权编号"
    # an answer naming someone who was not asked is refused; the relay stays open
    stranger = tmp_path / "stranger.csv"
    stranger.write_text(f"公民身份号码,就业状态\n{A},就业\n110101199003070038,就业\n", "utf-8")
    code, out = _respond(rs, relay_id, stranger)
    assert code == 1 and out["verdict"] == "rejected" and out["reason_code"] == "E_NOT_ASKED"
    # a value the catalog does not allow is caught by the client before sealing
    bad = tmp_path / "bad.csv"
    bad.write_text(f"公民身份号码,就业状态\n{A},在职\n", "utf-8")
    r = cli("respond", "--dir", rs, "--to-query", relay_id, bad)
    assert r.exit_code == 3 and "E_CODE" in r.output
    # the good answer closes the query
    good = tmp_path / "answer.csv"
    good.write_text(f"公民身份号码,就业状态,就业单位名称\n{A},就业,杭州某公司\n", "utf-8")
    code, out = _respond(rs, relay_id, good)
    assert code == 0 and out["verdict"] == "accepted", out
    r = cli("pull", "--dir", mz, "--json")
    assert r.exit_code == 0, r.output
    [segment] = [p for p in json.loads(r.stdout)["pulled"] if p["kind"] == "result"]
    assert "RS-JY-01 answered" in segment["summary"] and "final" in segment["summary"]
    r = cli("status", "--dir", mz, query, "--json")
    info = json.loads(r.stdout)
    assert info["state"] == "answered" and info["segments"] == [1]
    assert info["resources"][0]["state"] == "answered"
    rows = (Path(segment["opened_to"]) / "RS-JY-01-results.csv").read_text("utf-8")
    assert "杭州某公司" in rows and "no_record" in rows  # B asked, not in the answer
    [up] = [u for u in node.uploads(MZ) if u.bundle_id == query]
    assert up.state == "done"


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
