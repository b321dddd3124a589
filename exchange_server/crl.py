"""Whether the node's CRL is current: checked at start-up, watched, enforced at every upload.

Every login and every bundle is checked against the current CRL of the ministry CA that issued
the departments' certificates (部省 第五条), and without a current one every department is
refused (fail closed). :func:`crl_status` says, at any moment, whether that CRL is current and
until when; ``serve`` reports it at start-up, the pipeline process watches it (one log line and
one audit event ``crl.stale`` / ``crl.fresh`` per change, so the operator learns at once, not
at the next refused login), and the SFTP front refuses to commit an upload while it is not
current, even on a session that logged in before it went stale.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from cryptography import x509

from exchange_common.errors import CertificateError, InputError
from exchange_server.node import Node
from exchange_server.store.audit import EventSpec, append_events
from pki.verify import current_crl

__all__ = ["CrlStatus", "CrlWatch", "crl_status"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CrlStatus:
    """``code`` None when the CRL is current (until ``next_update``); else ``E_CRL_MISSING``,
    ``E_CRL_STALE``, ``E_CRL_INVALID`` or ``E_TRUST``, with ``message`` for the operator."""

    code: str | None
    message: str
    next_update: dt.datetime | None = None

    @property
    def current(self) -> bool:
        """True when the CRL is current."""
        return self.code is None


def _issuer(node: Node) -> x509.Certificate:
    chain = node.chain()
    trust = node.trust()
    for cert in (*chain[1:], *trust.intermediates, *trust.roots):
        if cert.subject == chain[0].issuer:
            return cert
    raise InputError("the node certificate's issuer is not in the trust store", code="E_TRUST")


def crl_status(node: Node, now: dt.datetime) -> CrlStatus:
    """The state of the CRL of the CA that issued the node's (and the departments') certificates
    at ``now``. Never raises for a CRL problem: it is the answer."""
    try:
        crl = current_crl(_issuer(node), node.trust().crls, now)
    except (CertificateError, InputError) as e:
        return CrlStatus(e.code, e.message)
    until = crl.next_update_utc
    return CrlStatus(None, f"the CRL is current until {until:%Y-%m-%d %H:%M} UTC", until)


class CrlWatch:
    """Reports each change of :func:`crl_status` once: a log line and an audit event."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.last: CrlStatus | None = None

    def check(self, now: dt.datetime) -> CrlStatus:
        """Check now; log and audit when the CRL became stale or current again (and the first
        time, when it is not current)."""
        status = crl_status(self.node, now)
        before = self.last
        self.last = status
        if before is not None and before.code == status.code:
            return status
        if status.current and before is None:
            log.info("%s", status.message)
            return status
        if status.current:
            log.warning("CRL current again: %s", status.message)
            action = "crl.fresh"
        else:
            log.error(
                "CRL not current (%s): %s; every department is refused until a current CRL is "
                "installed in %s",
                status.code,
                status.message,
                self.node.config.path(self.node.config.crl),
            )
            action = "crl.stale"
        with self.node.session() as s:
            append_events(s, [EventSpec("node", action, None, {"code": status.code})], now=now)
        return status
