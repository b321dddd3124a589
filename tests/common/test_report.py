"""Pass/fail reports to file: the overall verdict and both forms."""

from __future__ import annotations

import datetime as dt

from exchange_common.report import Check, Verdict, overall, report_json, report_text

P, W, F, S = Verdict.PASS, Verdict.WARN, Verdict.FAIL, Verdict.SKIP


def test_the_overall_verdict() -> None:
    assert overall([Check("a", P, ""), Check("b", P, "")]) is P
    assert overall([Check("a", P, ""), Check("b", W, "")]) is W
    assert overall([Check("a", W, ""), Check("b", F, "")]) is F
    assert overall([Check("a", P, ""), Check("b", S, "")]) is F  # a skipped check is not a pass
    assert overall([]) is P


def test_text_and_json_say_the_same() -> None:
    checks = [Check("credentials", P, "ok"), Check("round trip", W, "slow")]
    text = report_text("selftest of MZ330100", [("node", "n:22")], checks)
    assert text.splitlines()[:3] == ["selftest of MZ330100", "=" * 20, "node: n:22"]
    assert "[PASS] credentials  ok" in text and "[WARN] round trip   slow" in text
    assert text.endswith("overall: WARN\n")
    at = dt.datetime(2026, 12, 3, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    doc = report_json("x/1", {"department": "MZ330100"}, checks, at)
    assert doc["at"] == "2026-12-03T00:00:00+00:00" and doc["passed"] is True
    assert doc["overall"] == "warn" and doc["checks"][1] == {
        "name": "round trip",
        "verdict": "warn",
        "detail": "slow",
    }
