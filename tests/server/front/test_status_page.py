"""The status page and the monitor's parts that need no running node: escaping, the
Content-Security-Policy, addresses, and the metrics read from stage lines."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from exchange_common.errors import InputError
from exchange_server.front.metrics import FrontMetrics
from exchange_server.front.monitor import parse_address
from exchange_server.front.status_page import CSP, render_page


def _doc(dept: str = "MZ330100", why: str = "no step handles recheck bundles yet") -> dict:  # type: ignore[type-arg]
    return {
        "node": {"code": "NODE01", "at": "2026-12-03T08:00:00+00:00"},
        "uploads": {"by_state": {"done": 2}, "by_kind": {}, "by_department": {dept: {"done": 2}}},
        "oldest_moving": None,
        "held": [],
        "stuck": [
            {
                "upload_id": "u1",
                "department": dept,
                "kind": "recheck",
                "since": "2026-12-03T07:00:00+00:00",
                "why": why,
            }
        ],
        "rejections_last_day": {"E_PROVIDER": 1},
        "deadlines": {"overdue": 0, "due_within_a_day": 0},
        "crl": {"current": True, "code": None, "next_update": "2026-12-10T08:00:00+00:00"},
        "certificate": {"not_after": "2027-12-03T08:00:00+00:00", "days_left": 365},
        "pipeline": {"healthy": True, "queued": 0, "oldest_queued_seconds": 0, "held": 0},
        "calendar": {"years": [2025, 2026], "covers_this_year": True, "covers_next_year": False},
        "audit": {"events": 9, "checkpointed": 9, "newest_checkpoint_at": None},
    }


def test_the_page_shows_the_document_and_why_it_needs_attention() -> None:
    page = render_page(_doc(), ["1 upload(s) stuck"])
    assert "needs attention: 1 upload(s) stuck" in page
    assert "current until 2026-12-10 08:00 UTC" in page and "E_PROVIDER" in page
    assert "<script" not in page and 'http-equiv="refresh"' in page
    assert "nothing needs attention" in render_page(_doc(), [])


def test_every_value_is_escaped() -> None:
    page = render_page(_doc(dept="<script>alert(1)</script>", why='"><img src=x>'), ["<b>x</b>"])
    assert "<script>alert" not in page and "<img" not in page and "<b>x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_the_csp_allows_exactly_the_page_s_own_style() -> None:
    page = render_page(_doc(), [])
    (style,) = re.findall(r"<style>(.*?)</style>", page, flags=re.S)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in CSP and "default-src 'none'" in CSP
    assert "script-src" not in CSP  # nothing but 'none' for scripts


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("[::1]:0", ("::1", 0)),
        ("localhost:80", ("localhost", 80)),
    ],
)
def test_addresses(value: str, expected: tuple[str, int]) -> None:
    assert parse_address(value) == expected


@pytest.mark.parametrize("value", ["9464", "127.0.0.1", "127.0.0.1:http", ":9464", "h:70000"])
def test_bad_addresses_are_refused_by_name(value: str) -> None:
    with pytest.raises(InputError) as e:
        parse_address(value)
    assert e.value.code == "E_CONFIG" and repr(value) in e.value.message


def test_stage_lines_feed_the_histograms_and_nothing_else_does() -> None:
    m = FrontMetrics()
    line = (
        "upload 0b7c timings: state=sent total_ms=41 queued_ms=12 verify_ms=3 admit_ms=4 "
        "review_ms=9 receipt_ms=11 route_ms=0.5 record_ms=8"
    )
    assert m.observe_stages(line) and m.observe_stages("2026-12-03 INFO x: " + line)
    assert not m.observe_stages("login ok: address=10.0.0.1 user=MZ330100 method=x509")
    verify = m.registry.get_sample_value(
        "exchange_pipeline_stage_seconds_count", {"stage": "verify"}
    )
    assert verify == 2
    total = m.registry.get_sample_value("exchange_pipeline_upload_seconds_sum")
    assert total == pytest.approx(0.082)
    m.login_ok("ssh-key SHA256:abc")
    m.login_refused("E_ADDRESS")
    ok = m.registry.get_sample_value(
        "exchange_logins_total", {"result": "ok", "reason": "", "method": "ssh-key"}
    )
    assert ok == 1  # the key's fingerprint is not a label
