"""The SFTP front's admission logic: brute-force bans and refusal throttling.

The address check is exchange_common.net (tests/common/test_net.py).

Pure logic with a hand-driven clock: no sockets, no sleeping.
"""

from __future__ import annotations

import pytest

from exchange_server.front.gate import (
    BanPolicy,
    Gate,
    RefusalThrottle,
)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


POLICY = BanPolicy(max_failures=3, window_seconds=60, ban_seconds=300)


def test_ban_after_max_failures_within_window() -> None:
    clock = Clock()
    gate = Gate(POLICY, clock=clock)
    assert not gate.record_failure("10.0.0.1")
    clock.advance(10)
    assert not gate.record_failure("10.0.0.1")
    assert not gate.is_banned("10.0.0.1")
    clock.advance(10)
    assert gate.record_failure("10.0.0.1")  # the third failure starts the ban
    assert gate.is_banned("10.0.0.1")
    assert gate.banned_for("10.0.0.1") == pytest.approx(300)
    assert not gate.is_banned("10.0.0.2")  # per address


def test_ban_expires_after_ban_seconds() -> None:
    clock = Clock()
    gate = Gate(POLICY, clock=clock)
    for _ in range(3):
        gate.record_failure("10.0.0.1")
    clock.advance(299.9)
    assert gate.is_banned("10.0.0.1")
    clock.advance(0.2)
    assert not gate.is_banned("10.0.0.1")
    assert gate.tracked() == 0  # nothing kept once the ban is over
    # after the ban the count starts afresh
    assert not gate.record_failure("10.0.0.1")


def test_failures_outside_the_window_do_not_count() -> None:
    clock = Clock()
    gate = Gate(POLICY, clock=clock)
    gate.record_failure("10.0.0.1")
    gate.record_failure("10.0.0.1")
    clock.advance(61)
    assert not gate.record_failure("10.0.0.1")  # the first two expired
    assert not gate.is_banned("10.0.0.1")
    clock.advance(1)
    assert not gate.record_failure("10.0.0.1")
    assert gate.record_failure("10.0.0.1")  # three within the last 60 s


def test_failures_during_a_ban_do_not_extend_it() -> None:
    clock = Clock()
    gate = Gate(POLICY, clock=clock)
    for _ in range(3):
        gate.record_failure("10.0.0.1")
    clock.advance(100)
    assert not gate.record_failure("10.0.0.1")
    assert gate.banned_for("10.0.0.1") == pytest.approx(200)


def test_success_clears_failures_but_not_a_ban() -> None:
    clock = Clock()
    gate = Gate(POLICY, clock=clock)
    gate.record_failure("10.0.0.1")
    gate.record_failure("10.0.0.1")
    gate.record_success("10.0.0.1")
    assert not gate.record_failure("10.0.0.1")
    assert not gate.record_failure("10.0.0.1")
    assert gate.record_failure("10.0.0.1")
    gate.record_success("10.0.0.1")
    assert gate.is_banned("10.0.0.1")
    gate.record_success("10.0.0.9")  # unknown address: nothing to do


def test_zero_max_failures_disables_banning() -> None:
    gate = Gate(BanPolicy(0, 60, 300), clock=Clock())
    for _ in range(100):
        assert not gate.record_failure("10.0.0.1")
    assert not gate.is_banned("10.0.0.1")
    assert gate.tracked() == 0


def test_memory_is_bounded_and_bans_survive_pruning() -> None:
    clock = Clock()
    gate = Gate(BanPolicy(2, 60, 300), clock=clock, max_tracked=10)
    gate.record_failure("10.9.9.9")
    gate.record_failure("10.9.9.9")  # banned
    for i in range(100):
        gate.record_failure(f"10.0.0.{i}")
    assert gate.tracked() <= 10
    assert gate.is_banned("10.9.9.9")


def test_refusal_throttle_records_first_and_counts_the_rest() -> None:
    clock = Clock()
    throttle = RefusalThrottle(60, clock=clock)
    assert throttle.admit("E_UNKNOWN_ADDRESS", "10.0.0.1") == 0
    for _ in range(5):
        assert throttle.admit("E_UNKNOWN_ADDRESS", "10.0.0.1") is None
    assert throttle.admit("E_BANNED", "10.0.0.1") == 0  # another reason is another burst
    assert throttle.admit("E_UNKNOWN_ADDRESS", "10.0.0.2") == 0  # another address too
    clock.advance(60)
    assert throttle.admit("E_UNKNOWN_ADDRESS", "10.0.0.1") == 5  # reports what it held back
    assert throttle.admit("E_UNKNOWN_ADDRESS", "10.0.0.1") is None


def test_refusal_throttle_is_bounded() -> None:
    clock = Clock()
    throttle = RefusalThrottle(60, clock=clock, max_tracked=5)
    for i in range(50):
        assert throttle.admit("E_UNKNOWN_ADDRESS", f"10.0.0.{i}") == 0
    assert len(throttle._last) <= 5
