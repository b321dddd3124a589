"""Cross-comparison rules (定期交叉比对): an owner's roster against other departments' data.

A rule (``HOME/rules.toml``, example ``config/rules.example.toml``, every key in
``docs/comparison-rules.md``) names an owner department, its roster resource (e.g. ``MZ-DB-01``,
the 低保/特困/低保边缘 recipients) and target resources (cremation records; vehicles, real
estate, business registration). A run finds the roster persons who have records in each target
and delivers the flagged list to the owner as a node-signed ``result`` bundle (谷城: cremation
records against the allowance roll find deceased recipients still paid).

Guarantees:

- Access first: the owner must be allowed (:func:`~exchange_server.data.catalog.check_access`, the
  rule's business type) to see the roster and each target; only the items it may see are
  written. A refused target is reported with its reason code in the summary, never skipped
  silently; a refused roster, or every target refused, fails the run.
- Idempotent per stamp: the bundle's name and id are functions of (rule, stamp), so a run
  repeated with the same stamp after a crash delivers nothing twice and audits once.
- Every run is audited (``compare.run``; failures ``compare.failed``) with counts, reason codes
  and the bundle id, never an ID number or a name; log lines carry counts only.
- Scheduling is a pure function of the rule's schedule, the last run (read from the audit
  trail, no table of its own) and ``now``: :func:`next_due`, :func:`slot_for`.

Parsing and schedule arithmetic are pure; :func:`run_rule`, :func:`rule_status` and
:func:`run_due` do the I/O (store, datasets, spool) for the CLI and the node's pipeline.

This package re-exports the public API; the rooms behind it are
:mod:`~exchange_server.data.compare.rules` (the rules file),
:mod:`~exchange_server.data.compare.schedule` (pure schedule arithmetic),
:mod:`~exchange_server.data.compare.results` (what a run reports),
:mod:`~exchange_server.data.compare.run` (one run) and
:mod:`~exchange_server.data.compare.due` (status and scheduled runs).
"""

from __future__ import annotations

from exchange_server.data.compare.due import DueOutcome, RuleStatus, rule_status, run_due
from exchange_server.data.compare.results import RunResult, TargetOutcome
from exchange_server.data.compare.rules import (
    RULES_NAME,
    Exclusion,
    Rule,
    Schedule,
    find_rule,
    load_rules,
    parse_rules,
    rules_path,
)
from exchange_server.data.compare.run import ACTION_FAILED, ACTION_RUN, run_rule
from exchange_server.data.compare.schedule import (
    RETRY_AFTER,
    bundle_name,
    next_due,
    slot_for,
    stamp_of,
)

__all__ = [
    "ACTION_FAILED",
    "ACTION_RUN",
    "RETRY_AFTER",
    "RULES_NAME",
    "DueOutcome",
    "Exclusion",
    "Rule",
    "RuleStatus",
    "RunResult",
    "Schedule",
    "TargetOutcome",
    "bundle_name",
    "find_rule",
    "load_rules",
    "next_due",
    "parse_rules",
    "rule_status",
    "rules_path",
    "run_due",
    "run_rule",
    "slot_for",
    "stamp_of",
]
