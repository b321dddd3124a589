"""The query procedure end to end with real processes (a ``serve`` node, the department CLIs,
the administrator's CLI): routing, relays, deadlines in working days, segments, suspension.

民政 asks for one hosted resource (RS-SI-01, pushed by 人社) and two relayed ones (RS-JY-01,
RS-SY-02, kept by 人社). 人社 answers one relay on time and one late; an answer naming a person
who was not asked is refused and the relay stays open; the deadline check, run by the
administrator's ``query tick --at`` (the clock injected into a real process), makes the late one
overdue with notices on both sides; the result arrives in segments and the final one closes the
query. A second query is suspended for a missing authorization and resumed by a supplement; an
extension is recorded and moves the deadline.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from exchange_common.idnumber import check_character
from exchange_server.admin.cli import app as server_app
from exchange_server.store.calendar import import_years
from tests.common.calendargen import FICTIONAL_2027
from tests.integration.node_harness import DeptSpec, NodeHarness, write_application
from tests.integration.test_client_node import MZ, RS, cli, init_args

pytestmark = pytest.mark.integration

A = "33010219500101001" + check_character("33010219500101001")
B = "11010519491231002X"
C = "33010219800505123" + check_character("33010219800505123")
CATALOG = Path(__file__).resolve().parents[2] / "config" / "catalog.example.toml"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeHarness]:
    with NodeHarness(tmp_path_factory.mktemp("procedure"), [DeptSpec(MZ), DeptSpec(RS)]) as h:
        with h.node() as n, n.session() as s:  # deadlines from late December reach into 2027
            import_years(s, {2027: FICTIONAL_2027}, actor="test", now=dt.datetime.now(dt.UTC))
        yield h


def admin(node: NodeHarness, *args: str) -> dict[str, Any]:
    r = CliRunner().invoke(server_app, ["query", *args, "--home", str(node.home), "--json"])
    assert r.exit_code == 0, (r.output, r.stderr)
    body: dict[str, Any] = json.loads(r.stdout)
    return body


def _client(node: NodeHarness, root: Path, code: str) -> Path:
    directory = root / code
    r = cli(*init_args(node, directory, code))
    assert r.exit_code == 0, r.output
    (directory / "catalog.toml").write_bytes(CATALOG.read_bytes())
    return directory


def _json(*args: Any) -> dict[str, Any]:
    r = cli(*[str(a) for a in args], "--json")
    assert r.exit_code in (0, 1), r.output
    body: dict[str, Any] = json.loads(r.stdout)
    return body


def _pull(directory: Path) -> list[dict[str, Any]]:
    pulled: list[dict[str, Any]] = _json("pull", "--dir", directory)["pulled"]
    return pulled


def _push(directory: Path, *args: Any) -> dict[str, Any]:
    return _json("push", "--dir", directory, "--wait", "--timeout", "30", *args)


def _respond(directory: Path, relay: str, answer: Path) -> dict[str, Any]:
    return _json(
        "respond", "--dir", directory, "--to-query", relay, "--wait", "--timeout", "30", answer
    )


def _after(due_date: str) -> str:
    """The first instant after ``due_date`` ends in Shanghai, as an --at value."""
    day = dt.date.fromisoformat(due_date) + dt.timedelta(days=1)
    return f"{day.isoformat()}T00:00:00+08:00"


def test_relayed_query_with_a_late_answer_arrives_in_segments(
    node: NodeHarness, tmp_path: Path
) -> None:
    mz, rs = _client(node, tmp_path, MZ), _client(node, tmp_path, RS)
    data = tmp_path / "si.csv"
    data.write_text(
        "公民身份号码,姓名,险种类型,缴费状态,缴费基数,待遇领取状态,待遇领取金额,数据日期\n"
        f"{A},张三,基本养老保险,正常缴费,3000.00,未领取,0,2024-01-01\n",
        "utf-8",
    )
    assert (
        _push(rs, "--kind", "data", "--field", "resource=RS-SI-01", data)["verdict"] == "accepted"
    )
    persons = tmp_path / "persons.csv"
    persons.write_text(f"身份证号,姓名,授权编号\n{A},张三,SQ-1\n{B},欧阳娜娜,SQ-2\n", "utf-8")
    app = write_application(tmp_path / "app.json", 2, ("RS-SI-01", "RS-JY-01", "RS-SY-02"))
    query = _push(mz, "--kind", "query", "--fields-json", app, persons)
    assert query["verdict"] == "accepted"
    qid = query["bundle_id"]

    # segment 1: the hosted resource at once; the relayed ones pending with their deadlines
    [seg1] = [p for p in _pull(mz) if p["kind"] == "result"]
    assert "RS-SI-01 answered" in seg1["summary"] and "more to come" in seg1["summary"]
    status = _json("status", "--dir", mz, qid)
    states = {r["resource"]: (r["answered_by"], r["state"]) for r in status["resources"]}
    assert states == {
        "RS-SI-01": ("node", "answered"),
        "RS-JY-01": ("provider", "pending"),
        "RS-SY-02": ("provider", "pending"),
    }
    due = {r["resource"]: r["due_date"] for r in status["resources"]}
    assert due["RS-JY-01"] and due["RS-SY-02"]

    relays = {p["bundle_id"]: p for p in _pull(rs) if p["kind"] == "relay"}
    assert len(relays) == 2
    shown = admin(node, "show", qid)
    relay_of = {r["resource"]: r["relay_id"] for r in shown["resources"] if r["relay_id"]}
    assert set(relay_of.values()) == set(relays)

    # 人社 names someone who was not asked: refused, the relay stays open
    stranger = tmp_path / "stranger.csv"
    stranger.write_text(f"公民身份号码,就业状态\n{A},就业\n{C},失业\n", "utf-8")
    refused = _respond(rs, relay_of["RS-JY-01"], stranger)
    assert (refused["verdict"], refused["reason_code"]) == ("rejected", "E_NOT_ASKED")
    # on time: RS-JY-01
    jy = tmp_path / "jy.csv"
    jy.write_text(f"公民身份号码,就业状态,就业单位名称\n{A},就业,杭州某公司\n", "utf-8")
    assert _respond(rs, relay_of["RS-JY-01"], jy)["verdict"] == "accepted"
    [seg2] = [p for p in _pull(mz) if p["kind"] == "result"]
    assert "RS-JY-01 answered" in seg2["summary"] and "RS-SY-02 pending" in seg2["summary"]

    # RS-SY-02's deadline passes: the check (clock injected) sends notices to both sides
    report = admin(node, "tick", "--at", _after(due["RS-SY-02"]))
    assert report["overdue"] == 1
    [to_rs] = [p for p in _pull(rs) if p["kind"] == "notice"]
    assert "RS-SY-02" in to_rs["summary"] and "overdue" in to_rs["summary"]
    [to_mz] = [p for p in _pull(mz) if p["kind"] == "notice"]
    assert "overdue" in to_mz["summary"]
    status = _json("status", "--dir", mz, qid)
    assert {r["resource"]: r["state"] for r in status["resources"]}["RS-SY-02"] == "overdue"
    assert status["state"] == "open"  # never plain success while something is missing

    # the late answer is taken; the final segment closes the query
    sy = tmp_path / "sy.csv"
    sy.write_text(f"公民身份号码,领取状态,月领取金额\n{B},正在领取,1890.00\n", "utf-8")
    assert _respond(rs, relay_of["RS-SY-02"], sy)["verdict"] == "accepted"
    [seg3] = [p for p in _pull(mz) if p["kind"] == "result"]
    assert "final" in seg3["summary"]
    status = _json("status", "--dir", mz, qid)
    assert status["state"] == "answered" and status["segments"] == [1, 2, 3]
    assert admin(node, "show", qid)["state"] == "closed"
    [up] = [u for u in node.uploads(MZ) if u.bundle_id == qid]
    assert up.state == "done"
    assert A not in node.log_text() and B not in node.log_text()


def test_suspended_query_resumes_with_a_supplement_and_an_extension_moves_its_deadline(
    node: NodeHarness, tmp_path: Path
) -> None:
    mz, rs = _client(node, tmp_path, MZ), _client(node, tmp_path, RS)
    persons = tmp_path / "persons.csv"
    persons.write_text(f"身份证号,姓名,授权编号\n{A},张三,SQ-1\n{C},李四,\n", "utf-8")
    app = write_application(tmp_path / "app.json", 2, ("RS-JY-01",))
    # the client refuses to send it without the opt-in (先授权、后核对) …
    r = cli("push", "--dir", mz, "--kind", "query", "--fields-json", app, persons)
    assert r.exit_code == 3 and "E_AUTHORIZATION" in r.output
    # … and with it, the node suspends it
    query = _push(mz, "--kind", "query", "--fields-json", app, "--allow-unauthorized", persons)
    assert query["verdict"] == "accepted"
    qid = query["bundle_id"]
    _pull(mz)
    status = _json("status", "--dir", mz, qid)
    assert status["state"].startswith("suspended: 1 person(s)")
    _pull(rs)  # what earlier tests left for 人社
    [res] = admin(node, "show", qid)["resources"]
    assert res["relay_sent_at"] is None  # nothing relayed while suspended

    supplement = tmp_path / "supplement.csv"
    supplement.write_text(f"身份证号,姓名,授权编号\n{C},李四,SQ-3\n", "utf-8")
    sup = _push(mz, "--kind", "supplement", "--field", f"in_reply_to={qid}", supplement)
    assert sup["verdict"] == "accepted"
    [res] = admin(node, "show", qid)["resources"]
    [relay] = [p for p in _pull(rs) if p["kind"] == "relay"]
    assert relay["bundle_id"] == res["relay_id"] and "2 person(s)" in relay["summary"]

    before = admin(node, "show", qid)["resources"][0]["due_date"]
    extended = CliRunner().invoke(
        server_app,
        ["query", "extend", "--home", str(node.home), qid, "RS-JY-01", "--days", "2",
         "--reason", "系统升级", "--by", "王科长", "--json"],
    )  # fmt: skip
    assert extended.exit_code == 0, extended.output
    after = json.loads(extended.stdout)["due_date"]
    assert after > before
    [notice] = [p for p in _pull(rs) if p["kind"] == "notice"]
    assert f"extended to {after}" in notice["summary"] and "系统升级" in notice["summary"]
    _pull(mz)
    status = _json("status", "--dir", mz, qid)
    assert (status["resources"][0]["state"], status["resources"][0]["due_date"]) == (
        "extended",
        after,
    )
    # the old deadline passes without effect; the new one is enforced
    assert admin(node, "tick", "--at", _after(before))["overdue"] == 0
    assert admin(node, "tick", "--at", _after(after))["overdue"] == 1
