"""The local state file: atomic round trip, nothing half-applied, damage detected."""

from __future__ import annotations

from pathlib import Path

import pytest

from exchange_client.state import (
    PulledItem,
    PushedBundle,
    State,
    locked_state,
    read_state,
    write_state,
)
from exchange_common.errors import StoreError


def pushed(bid: str = "b1") -> PushedBundle:
    return PushedBundle(bid, "data", "2026-11-22T08:00:00Z", 2, 1234, "00" * 32)


def test_empty_when_missing(tmp_path: Path) -> None:
    assert read_state(tmp_path / "state.json") == State()


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    st = State()
    st.pushed["b1"] = pushed()
    st.pulled["receipt-1.bundle"] = PulledItem(
        "receipt-1.bundle", "11" * 32, 10, "2026-11-22T08:00:01Z", "opened", kind="receipt"
    )
    write_state(path, st)
    assert read_state(path) == st
    assert read_state(path).pulled_digests() == {"11" * 32}
    assert path.stat().st_mode & 0o777 == 0o600


def test_locked_state_writes_on_success(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    with locked_state(path) as st:
        st.pushed["b1"] = pushed()
    assert "b1" in read_state(path).pushed


def test_locked_state_keeps_file_on_error(tmp_path: Path) -> None:
    """An exception mid-update leaves the previous state exactly as it was."""
    path = tmp_path / "state.json"
    with locked_state(path) as st:
        st.pushed["b1"] = pushed()
    before = path.read_bytes()
    with pytest.raises(RuntimeError), locked_state(path) as st:
        st.pushed["b2"] = pushed("b2")
        raise RuntimeError("crash")
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    "text", ["{", "[]", '{"version": 9}', '{"version": 1, "pushed": {"x": {"a": 1}}}']
)
def test_damaged_state_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(text)
    with pytest.raises(StoreError):
        read_state(path)
