"""``exchange-server dept check CODE``: the node's side of a department's admission probe.

部省 第六条: parties are tested before admission and inspected. The node cannot log in as the
department, so it checks what it holds, and what the department's own probe
(``exchange-client selftest``) left behind:

1. the registration (active or disabled);
2. the registered certificate: its chain to the ministry root, validity left, revocation on the
   node's CRL;
3. the node's CRL (a stale CRL refuses everybody);
4. the registered networks and login methods (X.509, SSH keys);
5. logins: the last successful one, refusals in the window;
6. the round trip: the newest ``probe`` bundle from the department, accepted with its receipt
   sent, within the window.

The report (:mod:`exchange_common.report`) is for the ministry operator's file; it names codes,
addresses and bundle ids, nothing personal.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from typing import Any

from sqlmodel import Session, col, select

from exchange_common.errors import ExchangeError
from exchange_common.report import Check, Verdict
from exchange_server.crl import crl_status
from exchange_server.node import Node
from exchange_server.store.models import AuditEvent, BundleState, Upload, as_utc
from exchange_server.store.registry import department_certificate, get_department
from pki.bundle import BundleKind
from pki.identity import Role
from pki.standing import EXPIRY_WARNING_DAYS, certificate_standing
from pki.verify import verify_certificate

__all__ = ["SCHEMA", "check_department"]

SCHEMA = "exchange-dept-check/1"


def _when(at: dt.datetime) -> str:
    return as_utc(at).isoformat(timespec="seconds")


def _certificate(node: Node, s: Session, code: str, now: dt.datetime) -> Check:
    cert = department_certificate(s, code)
    assert cert is not None  # get_department found it
    issuers = node.chain()[1:]
    try:
        verify_certificate(
            cert, node.trust(), now=now, chain=issuers, role=Role.DEPARTMENT, require_crl=False
        )
    except ExchangeError as e:
        return Check("certificate", Verdict.FAIL, f"{e.message} ({e.code})")
    standing = certificate_standing(cert, node.trust(), now, issuers=issuers)
    if standing.refused:
        verdict = Verdict.FAIL
    elif standing.days_left < EXPIRY_WARNING_DAYS:
        verdict = Verdict.WARN
    else:
        verdict = Verdict.PASS
    return Check("certificate", verdict, f"chains to the ministry root; {standing.describe()}")


def _logins(s: Session, code: str, since: dt.datetime, days: int) -> Check:
    last = s.exec(
        select(AuditEvent)
        .where(AuditEvent.action == "login.ok", AuditEvent.subject == code)
        .order_by(col(AuditEvent.seq).desc())
        .limit(1)
    ).first()
    refused = s.exec(
        select(AuditEvent.detail).where(
            AuditEvent.action == "login.refused",
            AuditEvent.subject == code,
            col(AuditEvent.at) >= since,
        )
    ).all()
    reasons: Counter[str] = Counter()
    for detail in refused:
        try:
            reasons[str(json.loads(detail).get("reason", "?"))] += 1
        except (ValueError, AttributeError):
            reasons["?"] += 1
    tail = (
        "; refused in the last "
        f"{days} days: " + ", ".join(f"{k} {v}" for k, v in reasons.most_common())
        if reasons
        else f"; no refusal in the last {days} days"
    )
    if last is None:
        return Check("logins", Verdict.WARN, "never logged in" + tail)
    method = str(json.loads(last.detail).get("method", "?")).split(" ", 1)[0]
    recent = as_utc(last.at) >= since
    return Check(
        "logins",
        Verdict.PASS if recent else Verdict.WARN,
        f"last login {_when(last.at)} with {method}" + tail,
    )


def _round_trip(s: Session, code: str, since: dt.datetime, days: int) -> Check:
    probe = s.exec(
        select(Upload)
        .where(Upload.dept_code == code, Upload.kind == BundleKind.PROBE.value)
        .order_by(col(Upload.received_at).desc())
        .limit(1)
    ).first()
    if probe is None:
        return Check(
            "round trip",
            Verdict.FAIL,
            "no selftest probe received yet: ask the department to run `exchange-client selftest`",
        )
    seen = f"probe {probe.bundle_id} received {_when(probe.received_at)}"
    if probe.state == BundleState.REJECTED.value:
        return Check("round trip", Verdict.FAIL, f"{seen}, rejected ({probe.reason_code})")
    if probe.state != BundleState.DONE.value:
        return Check("round trip", Verdict.WARN, f"{seen}, still {probe.state}")
    if as_utc(probe.received_at) < since:
        return Check(
            "round trip",
            Verdict.WARN,
            f"{seen}, accepted, but older than {days} days: ask for a new selftest",
        )
    return Check("round trip", Verdict.PASS, f"{seen}, accepted, its signed receipt sent")


def check_department(
    node: Node, code: str, *, now: dt.datetime, days: int = 30
) -> tuple[dict[str, Any], list[Check]]:
    """Run the node's checks of department ``code`` (``days``: how recent logins and the probe
    must be). Returns the report's facts and checks. Raises ``InputError`` E_NOT_FOUND for a
    department that is not registered."""
    since = now - dt.timedelta(days=days)
    with node.session(write=False) as s:
        view = get_department(s, code)
        facts: dict[str, Any] = {
            "department": view.code,
            "name": view.name,
            "node": node.config.code,
            "window_days": days,
        }
        checks = [
            Check(
                "registration",
                Verdict.PASS if view.state == "active" else Verdict.FAIL,
                f"registered, {view.state}; certificate serial {view.cert_serial}",
            ),
            _certificate(node, s, view.code, now),
        ]
        crl = crl_status(node, now)
        checks.append(Check("node CRL", Verdict.PASS if crl.current else Verdict.FAIL, crl.message))
        methods = ["X.509 certificate"]
        if view.ssh_keys:
            methods.append(f"{len(view.ssh_keys)} SSH key(s)")
        checks.append(
            Check(
                "access",
                Verdict.PASS,
                f"from {', '.join(view.networks)}; login with {' or '.join(methods)}",
            )
        )
        checks.append(_logins(s, view.code, since, days))
        checks.append(_round_trip(s, view.code, since, days))
    return facts, checks
