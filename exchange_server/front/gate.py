"""Admission decisions of the SFTP front, as pure logic: who may connect, and who is banned.

Nothing here does I/O. Time comes from an injected ``clock`` (seconds, monotonic), so the tests
drive it by hand. :mod:`exchange_server.front.server` asks these objects before it lets a connection
see the SSH banner and after every login attempt.

- :class:`Gate` bans an address that failed to log in ``max_failures`` times within
  ``window_seconds``, for ``ban_seconds`` (brute-force protection). A successful login clears
  the address's failure history.
- :class:`RefusalThrottle` decides which refusals go to the audit trail when one address
  hammers the node: the first refusal per (reason, address) in a window is recorded, with the
  number of identical refusals suppressed before it, so a flood cannot flood the trail.

The IP registration check itself (部省 第五条) is :func:`exchange_common.net.in_networks`, the one
definition every caller shares.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = [
    "BanPolicy",
    "Gate",
    "RefusalThrottle",
]

Clock = Callable[[], float]


@dataclass(frozen=True)
class BanPolicy:
    """``max_failures`` failed logins within ``window_seconds`` ban an address for
    ``ban_seconds``. ``max_failures <= 0`` disables banning."""

    max_failures: int
    window_seconds: float
    ban_seconds: float


@dataclass
class _Record:
    failures: deque[float] = field(default_factory=deque)
    banned_until: float | None = None


class Gate:
    """The ban list. Not thread-safe: the asyncio event loop is its only caller."""

    def __init__(
        self, policy: BanPolicy, *, clock: Clock = time.monotonic, max_tracked: int = 100_000
    ):
        self.policy = policy
        self._clock = clock
        self._max_tracked = max_tracked
        self._records: dict[str, _Record] = {}

    def banned_for(self, address: str) -> float | None:
        """Seconds left of the address's ban, or ``None`` when it is not banned."""
        rec = self._records.get(address)
        if rec is None or rec.banned_until is None:
            return None
        left = rec.banned_until - self._clock()
        if left > 0:
            return left
        rec.banned_until = None
        if not rec.failures:
            del self._records[address]
        return None

    def is_banned(self, address: str) -> bool:
        """True while the address is banned."""
        return self.banned_for(address) is not None

    def record_failure(self, address: str) -> bool:
        """Count one failed login from ``address``; True when this failure starts a ban."""
        if self.policy.max_failures <= 0:
            return False
        now = self._clock()
        rec = self._records.get(address)
        if rec is None:
            self._make_room(now)
            rec = self._records[address] = _Record()
        if rec.banned_until is not None and rec.banned_until > now:
            return False
        window_start = now - self.policy.window_seconds
        while rec.failures and rec.failures[0] <= window_start:
            rec.failures.popleft()
        rec.failures.append(now)
        if len(rec.failures) >= self.policy.max_failures:
            rec.failures.clear()
            rec.banned_until = now + self.policy.ban_seconds
            return True
        return False

    def record_success(self, address: str) -> None:
        """A successful login: forget the address's earlier failures (a ban stays)."""
        rec = self._records.get(address)
        if rec is None:
            return
        rec.failures.clear()
        if rec.banned_until is None:
            del self._records[address]

    def tracked(self) -> int:
        """How many addresses have failures or bans on record."""
        return len(self._records)

    def _make_room(self, now: float) -> None:
        # Bounded memory: a flood of distinct addresses must not grow the table without end.
        # Expired entries go first; if that is not enough, the oldest unbanned entries go.
        if len(self._records) < self._max_tracked:
            return
        window_start = now - self.policy.window_seconds
        for addr in list(self._records):
            rec = self._records[addr]
            while rec.failures and rec.failures[0] <= window_start:
                rec.failures.popleft()
            if rec.banned_until is not None and rec.banned_until <= now:
                rec.banned_until = None
            if not rec.failures and rec.banned_until is None:
                del self._records[addr]
        for addr in list(self._records):
            if len(self._records) < self._max_tracked:
                break
            if self._records[addr].banned_until is None:
                del self._records[addr]


class RefusalThrottle:
    """Which refusals to record in full when the same one repeats.

    :meth:`admit` returns ``None`` for a refusal to suppress, or the number of identical
    refusals suppressed since the last recorded one (0 for the first).
    """

    def __init__(
        self, window_seconds: float, *, clock: Clock = time.monotonic, max_tracked: int = 10_000
    ):
        self.window_seconds = window_seconds
        self._clock = clock
        self._max_tracked = max_tracked
        self._last: dict[tuple[str, str], tuple[float, int]] = {}

    def admit(self, reason: str, address: str) -> int | None:
        """Decide for one refusal; see the class docstring."""
        now = self._clock()
        key = (reason, address)
        seen = self._last.get(key)
        if seen is not None and now - seen[0] < self.window_seconds:
            self._last[key] = (seen[0], seen[1] + 1)
            return None
        if seen is None and len(self._last) >= self._max_tracked:
            cutoff = now - self.window_seconds
            self._last = {k: v for k, v in self._last.items() if v[0] > cutoff}
            if len(self._last) >= self._max_tracked:
                self._last.clear()
        self._last[key] = (now, 0)
        return seen[1] if seen is not None else 0
