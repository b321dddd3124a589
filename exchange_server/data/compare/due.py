"""Scheduled comparisons: each rule's status (:func:`rule_status`) and the due runs (:func:`run_due`).

The last run and the last failure are read from the audit trail (no table of their own); what is
due is the pure :func:`~exchange_server.data.compare.schedule.next_due`. :func:`run_due` is what
the node's pipeline calls: a failing rule is logged and audited and the others still run.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from exchange_common.errors import ExchangeError
from exchange_server.data.compare.results import RunResult
from exchange_server.data.compare.rules import Rule
from exchange_server.data.compare.run import ACTION_FAILED, ACTION_RUN, run_rule
from exchange_server.data.compare.schedule import _utc, next_due, slot_for
from exchange_server.node import Node
from exchange_server.store.models import AuditEvent, as_utc


@dataclass(frozen=True)
class RuleStatus:
    """A rule's place in its schedule at ``now``."""

    rule: Rule
    last_run: dt.datetime | None
    last_flagged: int | None
    last_failure: dt.datetime | None
    last_failure_code: str | None
    next_due: dt.datetime | None
    due: bool

    def as_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "rule": self.rule.name,
            "title": self.rule.title,
            "owner": self.rule.owner,
            "schedule": str(self.rule.schedule),
            "enabled": self.rule.enabled,
            "last_run": self.last_run.isoformat() if self.last_run else None,
            "last_flagged": self.last_flagged,
            "last_failure": self.last_failure.isoformat() if self.last_failure else None,
            "last_failure_code": self.last_failure_code,
            "next_due": self.next_due.isoformat() if self.next_due else None,
            "due": self.due,
        }


def _last_event(session: Session, action: str, rule: str) -> AuditEvent | None:
    return session.exec(
        select(AuditEvent)
        .where(AuditEvent.action == action, AuditEvent.subject == rule)
        .order_by(col(AuditEvent.seq).desc())
        .limit(1)
    ).first()


def rule_status(node: Node, rules: Sequence[Rule], *, now: dt.datetime) -> list[RuleStatus]:
    """Each rule's last run and last failure (from the audit trail) and when it is next due.

    A disabled rule is never due (it still runs on demand).
    """
    out = []
    with node.session(write=False) as s:
        for rule in rules:
            run = _last_event(s, ACTION_RUN, rule.name)
            fail = _last_event(s, ACTION_FAILED, rule.name)
            if fail is not None and run is not None and fail.seq < run.seq:
                fail = None  # a success since: the failure no longer matters
            last = as_utc(run.at) if run else None
            failed_at = as_utc(fail.at) if fail else None
            due_at = next_due(rule.schedule, last, now=now, last_failure=failed_at)
            out.append(
                RuleStatus(
                    rule=rule,
                    last_run=last,
                    last_flagged=json.loads(run.detail).get("flagged_persons") if run else None,
                    last_failure=failed_at,
                    last_failure_code=json.loads(fail.detail).get("code") if fail else None,
                    next_due=due_at,
                    due=rule.enabled and due_at is not None and due_at <= _utc(now),
                )
            )
    return out


@dataclass(frozen=True)
class DueOutcome:
    """One rule :func:`run_due` ran: its result, or the error it failed with."""

    rule: str
    result: RunResult | None = None
    error: ExchangeError | None = None

    def as_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        if self.result is not None:
            return {"rule": self.rule, "ok": True, **self.result.as_json()}
        assert self.error is not None
        return {
            "rule": self.rule,
            "ok": False,
            "code": self.error.code,
            "error": self.error.message,
        }


def run_due(
    node: Node, rules: Sequence[Rule], *, now: dt.datetime, actor: str = "node"
) -> list[DueOutcome]:
    """Run every enabled rule that is due at ``now``, each stamped with its slot
    (:func:`slot_for`); what the node's pipeline calls.

    A rule that fails (no data yet, owner not registered, …) is logged and audited and the
    others still run; its next attempt waits :data:`RETRY_AFTER`. Never raises an
    ExchangeError: the outcomes say what happened.
    """
    outcomes = []
    for status in rule_status(node, rules, now=now):
        if not status.due:
            continue
        rule = status.rule
        slot = slot_for(rule.schedule, status.last_run, now=now)
        try:
            result = run_rule(node, rule, now=now, stamp=slot, scheduled=True, actor=actor)
        except ExchangeError as e:
            outcomes.append(DueOutcome(rule.name, error=e))
            continue
        outcomes.append(DueOutcome(rule.name, result=result))
    return outcomes
