"""Bounded retries with exponential backoff for transient network failures (pure logic).

Only failures that may pass by themselves are retried: connection refused or reset, timeouts,
a connection lost mid-transfer. A changed host key, refused credentials or a bundle the node
rejected are never retried: trying again cannot help and, for credentials, would count toward
the node's ban of the address.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from exchange_common.errors import TransportError

__all__ = ["TRANSIENT_CODES", "backoff_delays", "is_transient", "retry_async"]

T = TypeVar("T")

#: TransportError codes worth another attempt.
TRANSIENT_CODES = frozenset({"E_UNREACHABLE", "E_TIMEOUT", "E_CONNECTION_LOST"})


def backoff_delays(
    retries: int,
    *,
    base: float = 1.0,
    factor: float = 2.0,
    cap: float = 30.0,
    jitter: Callable[[], float] = random.random,
) -> Iterator[float]:
    """The waits before each of ``retries`` further attempts.

    Delay *n* (from 0) is ``min(cap, base * factor**n)`` scaled by ``0.5 + jitter() / 2`` so
    many departments that lost the node at the same moment do not reconnect in lockstep.
    ``jitter`` returns a value in [0, 1) and is an argument so tests are deterministic.
    """
    for n in range(max(0, retries)):
        yield min(cap, base * factor**n) * (0.5 + jitter() / 2)


def is_transient(error: BaseException) -> bool:
    """True when ``error`` is a transport failure that may pass on its own."""
    return isinstance(error, TransportError) and error.code in TRANSIENT_CODES


async def retry_async(
    attempt: Callable[[], Awaitable[T]],
    delays: Iterator[float],
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    on_retry: Callable[[BaseException, float], None] | None = None,
) -> T:
    """Run ``attempt``; after a transient failure wait the next delay and try again.

    Raises the last error once ``delays`` is exhausted, and any non-transient error at once.
    """
    while True:
        try:
            return await attempt()
        except TransportError as e:
            if not is_transient(e):
                raise
            delay = next(delays, None)
            if delay is None:
                raise
            if on_retry is not None:
                on_retry(e, delay)
            await sleep(delay)
