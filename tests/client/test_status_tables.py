"""``status`` tables on a narrow terminal: every id, outbox name and time whole (rich used to
cut them to ``3f2c8a6e-5d1b-4c1e-9a…``), and an empty list says that it is empty."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from exchange_client.cli import app
from exchange_client.state import PulledItem, PushedBundle, locked_state
from exchange_common.codes import REGISTRY

runner = CliRunner()

Q = "3f2c8a6e-5d1b-4c1e-9a57-0c2d5e7f9b10"
RECEIPT = "receipt-0b6f7c1e-2d3a-4b5c-8d9e-0f1a2b3c4d5e.bundle"


def _status(client_dir: Path, *args: str, columns: int = 60) -> str:
    r = runner.invoke(app, ["status", "--dir", str(client_dir), *args],
                      env={"COLUMNS": str(columns)})  # fmt: skip
    assert r.exit_code == 0, r.output
    return r.stdout


def test_a_narrow_terminal_cuts_no_id(client_dir: Path) -> None:
    with locked_state(client_dir / "state.json") as state:
        state.pushed[Q] = PushedBundle(Q, "query", "2026-12-01T00:00:00Z", 1, 1234, "ab",
                                       uploaded_at="2026-12-01T00:00:01Z", verdict="accepted")  # fmt: skip
        state.pulled[RECEIPT] = PulledItem(RECEIPT, "cd", 999, "2026-12-01T00:01:00Z", "opened",
                                           "receipt", "x", receipt_for=Q, verdict="accepted")  # fmt: skip
    out = _status(client_dir)
    assert Q in out and RECEIPT in out
    assert "2026-12-01T00:00:00Z" in out and "2026-12-01T00:01:00Z" in out
    assert "…" not in out
    assert Q in _status(client_dir, columns=200)  # a wide terminal: the same table, unchanged


def test_empty_lists_say_so(client_dir: Path) -> None:
    out = _status(client_dir)
    assert "nothing pushed from" in out and "nothing pulled from the node yet" in out
    assert "┏" not in out  # no empty table frames


def test_codes_in_the_tables_come_with_their_words(client_dir: Path) -> None:
    with locked_state(client_dir / "state.json") as state:
        state.pushed[Q] = PushedBundle(Q, "data", "2026-12-01T00:00:00Z", 1, 1234, "ab",
                                       uploaded_at="t", verdict="rejected", reason_code="E_REPLAY")  # fmt: skip
    out = _status(client_dir, columns=200)
    assert f"E_REPLAY: {REGISTRY['E_REPLAY'].peer_text}" in out
