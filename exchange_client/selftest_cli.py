"""``exchange-client selftest``: run the admission probe and print (or file) its report."""

from __future__ import annotations

import datetime as dt

from exchange_client.cli_shared import DirOpt, JsonOpt, TimeoutOpt
from exchange_client.selftest import SCHEMA, run_selftest
from exchange_common.cli import fail_on_error, version_text
from exchange_common.report import ReportOutOpt, print_report, report_json, report_text

__all__ = ["selftest"]


@fail_on_error
def selftest(
    directory: DirOpt,
    timeout: TimeoutOpt = 60.0,
    out: ReportOutOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Check that this department can work with the node, and print a report to file
    (部省 第六条: parties are tested before admission and inspected).

    Checks, in order: the credentials; your certificate (chain to the ministry root, CRL,
    validity left); the pinned node certificate; this machine's address against your
    registered networks; login to the node; a round trip: a sealed `probe` bundle uploaded
    and the node's signed receipt pulled, verified and `accepted`. The node's administrator
    sees the probe in `exchange-server dept check`. Exit 0 when every check passes (warnings
    included), 1 when one fails.

    **Examples**

        exchange-client selftest --dir ~/mz

        exchange-client selftest --dir ~/mz --out selftest-$(date +%F).txt

        exchange-client selftest --dir ~/mz --json
    """
    now = dt.datetime.now(dt.UTC)
    facts, checks = run_selftest(directory, now=now, timeout=timeout)
    facts["client"] = version_text()
    title = f"exchange-client selftest of {facts['department']}"
    lines = [
        ("department", str(facts["department"])),
        ("node", str(facts["node"])),
        ("at", now.isoformat(timespec="seconds")),
        ("client", str(facts["client"])),
    ]
    text = report_text(title, lines, checks)
    print_report(text, report_json(SCHEMA, facts, checks, now), checks, out=out, json_out=json_out)
