"""The one timestamp format the exchange writes: RFC 3339 in UTC with whole seconds.

``2026-11-22T08:00:00Z`` appears in bundle headers, receipts, the client's state file and its
rejection records; every writer formats it with :func:`rfc3339` so that two copies cannot drift
(a local time with a ``Z``, or fractional seconds one reader refuses).
"""

from __future__ import annotations

import datetime as dt

__all__ = ["RFC3339_UTC", "rfc3339"]

#: The ``strftime``/``strptime`` pattern of :func:`rfc3339` (for strict parsers of the format).
RFC3339_UTC = "%Y-%m-%dT%H:%M:%SZ"


def rfc3339(when: dt.datetime) -> str:
    """``when`` as RFC 3339 UTC with whole seconds: ``2026-11-22T08:00:00Z``.

    An aware datetime in any zone is converted to UTC; fractions of a second are dropped
    (truncated, not rounded). Raises ``ValueError`` for a naive datetime: it names no instant,
    and guessing the host's zone would stamp a wrong time without a trace.
    """
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError("time must be timezone-aware")
    return when.astimezone(dt.UTC).strftime(RFC3339_UTC)
