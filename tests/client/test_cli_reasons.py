"""What ``push --wait`` and ``wait`` print from the node's receipt: the verdict, the code with
the receipt's text, the node's explanation and hint; for a data push the rows stored and
rejected by reason (exit 7 when rows were refused); the same facts in ``--json``. Pure: the
receipts are written into a state as ``pull`` records them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer

from exchange_client.cli_shared import EXIT_PARTLY_REJECTED, _report_verdict
from exchange_client.receipts import receipt_report, receipt_summary
from exchange_client.state import PulledItem, PushedBundle, State
from exchange_common.codes import REGISTRY

B = "0b6f7c1e-2d3a-4b5c-8d9e-0f1a2b3c4d5e"
#: A valid GB 11643 number (checksum and region), as an unmasked value a careless node might send.
ID = "11010519491231002X"


def _state(verdict: str, code: str | None, kind: str = "data", **receipt: Any) -> State:
    s = State()
    s.pushed[B] = PushedBundle(B, kind, "2026-12-01T00:00:00Z", 1, 10, "0" * 64,
                               uploaded_at="2026-12-01T00:00:01Z", verdict=verdict,
                               reason_code=code, receipts=["receipt-u.bundle"])  # fmt: skip
    fields = {"bundle_id": B, "verdict": verdict, "reason_code": code, **receipt}
    s.pulled["receipt-u.bundle"] = PulledItem(
        "receipt-u.bundle", "1" * 64, 1, "2026-12-01T00:00:02Z", "opened", "receipt", "r",
        receipt_for=B, verdict=verdict, fields=fields,
    )  # fmt: skip
    return s


DATASET = {
    "resource": "RS-SI-01", "version": 3, "mode": "full", "rows": 5, "stored": 3, "rejected": 2,
    "rejects_by_reason": {"E_CODE:险种类型": 1, "E_DECIMAL:缴费基数": 1},
    "samples": [{"reason": "E_CODE:险种类型", "key": "110105********002X"},
                {"reason": "E_DECIMAL:缴费基数", "key": ID}],
}  # fmt: skip


def _report(state: State, json_out: bool, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        _report_verdict(state, B, Path("b.bundle"), json_out)
        code = 0
    except typer.Exit as e:
        code = e.exit_code
    return code, capsys.readouterr().out


def test_rejected_push_prints_code_text_and_hint(capsys: pytest.CaptureFixture[str]) -> None:
    entry = REGISTRY["E_SIGNATURE"]
    code, out = _report(_state("rejected", "E_SIGNATURE", reason=entry.peer_text), False, capsys)
    assert code == 1
    assert out.splitlines() == [
        f"bundle {B} REJECTED by the node: E_SIGNATURE",
        f"  {entry.peer_text}",
        f"hint: {entry.operator_hint}",
    ]


def test_a_partly_rejected_data_push_shows_counts_by_reason_and_exits_7(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out = _report(_state("accepted", None, details={"dataset": DATASET}), False, capsys)
    assert code == EXIT_PARTLY_REJECTED == 7
    lines = out.splitlines()
    assert (
        lines[0]
        == f"bundle {B} accepted by the node, but 2 of 5 row(s) REJECTED (signed receipt verified)"
    )
    assert "  RS-SI-01 v3 (full): 3 of 5 row(s) stored, 2 rejected" in lines
    assert (
        "  rejected E_CODE:险种类型: 1 row(s) — A value is not one of the allowed codes. "
        "e.g. 110105********002X"
    ) in lines
    assert (  # masked again here: the receipt held the whole number
        "  rejected E_DECIMAL:缴费基数: 1 row(s) — A value is not a decimal number. "
        "e.g. 110105********002X"
    ) in lines
    assert ID not in out and lines[-1].startswith("hint: correct the rejected rows")


def test_json_carries_outcome_counts_and_texts(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _report(_state("accepted", None, details={"dataset": DATASET}), True, capsys)
    data = json.loads(out)
    assert code == 7 and data["verdict"] == "accepted" and data["outcome"] == "partly_rejected"
    assert (data["rows"], data["rows_stored"], data["rows_rejected"]) == (5, 3, 2)
    assert data["rejected_by_reason"] == {"E_CODE:险种类型": 1, "E_DECIMAL:缴费基数": 1}
    assert data["receipt"] == "receipt-u.bundle" and ID not in out
    explained = {"explanation": "RS-SI-01: none of the 2 rows is valid",
                 "reason": REGISTRY["E_ROWS"].peer_text}  # fmt: skip
    code, out = _report(_state("rejected", "E_ROWS", **explained), True, capsys)
    data = json.loads(out)
    assert code == 1 and data["outcome"] == "rejected" and data["reason_code"] == "E_ROWS"
    assert data["reason_text"] == REGISTRY["E_ROWS"].peer_text
    assert data["explanation"] == "RS-SI-01: none of the 2 rows is valid"
    assert data["rows_stored"] == 0 and data["hint"] == REGISTRY["E_ROWS"].operator_hint


def test_accepted_push_json_has_no_reason(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _report(_state("accepted", None, kind="recheck"), True, capsys)
    data = json.loads(out)
    assert code == 0 and data["outcome"] == "accepted"
    assert data["reason_code"] is None and data["reason_text"] is None
    assert data["rows_stored"] is None  # not a data push: no row counts


@pytest.mark.parametrize("code", ["E_SCOPE", "E_AUTHORIZATION"])
def test_a_refused_query_shows_the_nodes_explanation_masked(
    code: str, capsys: pytest.CaptureFixture[str]
) -> None:
    why = f"RS-SI-01 may not be asked for 支出型困难 (person {ID})"
    state = _state("rejected", code, kind="query", reason=REGISTRY[code].peer_text, explanation=why)
    exit_code, out = _report(state, False, capsys)
    assert exit_code == 1
    assert f"  {REGISTRY[code].peer_text}" in out.splitlines()
    assert "  node: RS-SI-01 may not be asked for 支出型困难 (person 110105********002X)" in out
    assert ID not in out


def test_an_accepted_query_says_routing_deadline_and_suspension() -> None:
    query = {"persons": 2, "due_date": "2026-12-17", "suspended": True, "unauthorized": 1,
             "routing": [{"resource": "RS-SI-01", "answered_by": "node"},
                         {"resource": "RS-JY-01", "answered_by": "provider"}]}  # fmt: skip
    s = _state("accepted", None, kind="query", details={"query": query})
    lines = receipt_report(s, B).lines()
    assert (
        "  query: 2 person(s); RS-SI-01 (node), RS-JY-01 (provider); whole verification due 2026-12-17"
        in lines
    )
    assert any(f"in_reply_to={B}" in line for line in lines)
    assert receipt_summary(s.pulled["receipt-u.bundle"].fields or {}) is not None


def test_no_receipt_yet_is_waiting() -> None:
    s = _state("accepted", None)
    s.pushed[B].verdict, s.pushed[B].receipts = "waiting", []
    assert receipt_report(s, B).outcome == "waiting"


def test_a_malformed_dataset_record_is_shown_without_a_traceback() -> None:
    odd = {"dataset": {"rows": "5", "stored": None, "rejected": True, "rejects_by_reason": ["x"],
                       "samples": "none"}}  # fmt: skip
    report = receipt_report(_state("accepted", None, details=odd), B)
    assert report.outcome == "accepted" and report.rejected_by_reason == {}
    assert report.lines()[0].startswith(f"bundle {B} accepted")
