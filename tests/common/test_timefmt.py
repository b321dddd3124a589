"""exchange_common.timefmt: the one RFC 3339 UTC writer (known answers, zones, naive times)."""

from __future__ import annotations

import datetime as dt

import pytest

from exchange_common.timefmt import RFC3339_UTC, rfc3339

CST = dt.timezone(dt.timedelta(hours=8), "CST")


@pytest.mark.parametrize(
    ("when", "text"),
    [
        (dt.datetime(2026, 11, 22, 8, 0, 0, tzinfo=dt.UTC), "2026-11-22T08:00:00Z"),
        # Beijing time is converted, not relabelled: 08:00+08:00 is midnight UTC.
        (dt.datetime(2026, 11, 22, 8, 0, 0, tzinfo=CST), "2026-11-22T00:00:00Z"),
        # ...across a date boundary too.
        (dt.datetime(2026, 1, 1, 3, 30, 0, tzinfo=CST), "2025-12-31T19:30:00Z"),
        # Fractions are truncated, never rounded up into the next second.
        (dt.datetime(2026, 11, 22, 8, 0, 59, 999_999, tzinfo=dt.UTC), "2026-11-22T08:00:59Z"),
        (dt.datetime(1999, 12, 31, 23, 59, 59, tzinfo=dt.UTC), "1999-12-31T23:59:59Z"),
    ],
)
def test_known_answers(when: dt.datetime, text: str) -> None:
    assert rfc3339(when) == text


def test_naive_time_is_refused() -> None:
    # A naive datetime names no instant; formatting it as UTC (or as the host's zone) would
    # stamp a wrong time without a trace.
    with pytest.raises(ValueError, match="timezone-aware"):
        rfc3339(dt.datetime(2026, 11, 22, 8, 0, 0))


def test_round_trip_through_the_pattern() -> None:
    when = dt.datetime(2026, 2, 28, 23, 59, 7, tzinfo=dt.UTC)
    text = rfc3339(when)
    assert dt.datetime.strptime(text, RFC3339_UTC).replace(tzinfo=dt.UTC) == when
    assert len(text) == 20 and text.endswith("Z")
