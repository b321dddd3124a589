"""Backoff and retry decisions (pure: no clock, no network)."""

from __future__ import annotations

import asyncio

import pytest

from exchange_client.retry import backoff_delays, is_transient, retry_async
from exchange_common.errors import InputError, TransportError


def test_delays_grow_exponentially_and_cap() -> None:
    delays = list(backoff_delays(6, base=1, factor=2, cap=10, jitter=lambda: 1.0))
    assert delays == [1, 2, 4, 8, 10, 10]


def test_jitter_scales_between_half_and_full() -> None:
    assert list(backoff_delays(2, base=4, jitter=lambda: 0.0)) == [2, 4]


def test_no_retries_no_delays() -> None:
    assert list(backoff_delays(0)) == []
    assert list(backoff_delays(-3)) == []


@pytest.mark.parametrize("code", ["E_UNREACHABLE", "E_TIMEOUT", "E_CONNECTION_LOST"])
def test_transient(code: str) -> None:
    assert is_transient(TransportError("x", code=code))


@pytest.mark.parametrize(
    "error",
    [TransportError("x", code="E_HOST_KEY"), TransportError("x", code="E_LOGIN"), InputError("x")],
)
def test_not_transient(error: Exception) -> None:
    assert not is_transient(error)


def run(attempt_errors: list[Exception | None], retries: int) -> tuple[object, list[float], int]:
    slept: list[float] = []
    calls = 0

    async def attempt() -> str:
        nonlocal calls
        err = attempt_errors[calls]
        calls += 1
        if err is not None:
            raise err
        return "ok"

    async def sleep(d: float) -> None:
        slept.append(d)

    delays = backoff_delays(retries, jitter=lambda: 1.0)
    try:
        result: object = asyncio.run(retry_async(attempt, delays, sleep=sleep))
    except Exception as e:
        result = e
    return result, slept, calls


def test_retries_transient_then_succeeds() -> None:
    down = TransportError("refused", code="E_UNREACHABLE")
    result, slept, calls = run([down, down, None], retries=4)
    assert result == "ok" and slept == [1, 2] and calls == 3


def test_gives_up_after_bound() -> None:
    down = TransportError("refused", code="E_UNREACHABLE")
    result, slept, calls = run([down] * 5, retries=2)
    assert result is down and calls == 3 and len(slept) == 2


def test_host_key_change_never_retried() -> None:
    changed = TransportError("changed", code="E_HOST_KEY")
    result, slept, calls = run([changed, None], retries=4)
    assert result is changed and calls == 1 and slept == []
