"""A push the node rejected is reported with the code and the registry's texts."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import typer

from exchange_client.cli_shared import _report_verdict
from exchange_common.codes import REGISTRY


def _rec(verdict: str, code: str | None) -> SimpleNamespace:
    return SimpleNamespace(
        bundle_id="b-1",
        kind="data",
        members=1,
        size=10,
        sha256="0" * 64,
        uploaded_at="2026-12-01T00:00:00Z",
        verdict=verdict,
        reason_code=code,
    )


def test_rejected_push_prints_code_text_and_hint(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit):
        _report_verdict(_rec("rejected", "E_SIGNATURE"), Path("b.bundle"), json_out=False)
    entry = REGISTRY["E_SIGNATURE"]
    assert capsys.readouterr().out.splitlines() == [
        "bundle b-1 REJECTED by the node: E_SIGNATURE",
        f"  {entry.peer_text}",
        f"hint: {entry.operator_hint}",
    ]


def test_rejected_push_json_carries_code_and_text(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit):
        _report_verdict(_rec("rejected", "E_REPLAY"), Path("b.bundle"), json_out=True)
    data = json.loads(capsys.readouterr().out)
    assert data["reason_code"] == "E_REPLAY"
    assert data["reason_text"] == REGISTRY["E_REPLAY"].peer_text


def test_accepted_push_json_has_no_reason(capsys: pytest.CaptureFixture[str]) -> None:
    _report_verdict(_rec("accepted", None), Path("b.bundle"), json_out=True)
    data = json.loads(capsys.readouterr().out)
    assert data["reason_code"] is None and data["reason_text"] is None
