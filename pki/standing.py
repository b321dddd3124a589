"""Where a certificate stands at a moment: valid, expiring soon, expired, revoked.

:func:`~pki.verify.verify_certificate` answers yes or no for a connection; a listing needs to
say *which* of these holds, so that an operator sees a revoked department as revoked (a node's
registry once showed one as ``active``) and a certificate that ends next week before it does.
Pure: a certificate, the trust store's CRLs and ``now`` in, a :class:`Standing` out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from exchange_common.errors import CertificateError
from pki.verify import Revocation, TrustStore, current_crl, newest_crl, revocation_in

__all__ = [
    "EXPIRY_WARNING_DAYS",
    "CertState",
    "Standing",
    "certificate_standing",
    "time_until",
]

#: A certificate ending within this many days "expires soon" (a renewal takes the ministry and
#: the department some working days: ask for it a month ahead).
EXPIRY_WARNING_DAYS = 30


class CertState(StrEnum):
    """A certificate's standing, most serious first."""

    REVOKED = "revoked"
    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"
    #: Revocation cannot be checked against a current CRL: the node refuses it (fail closed).
    NO_CURRENT_CRL = "no-current-crl"
    EXPIRES_SOON = "expires-soon"
    VALID = "valid"


#: States in which a node refuses the certificate's holder.
REFUSED = frozenset(
    {CertState.REVOKED, CertState.EXPIRED, CertState.NOT_YET_VALID, CertState.NO_CURRENT_CRL}
)


def time_until(when: dt.datetime, now: dt.datetime) -> str:
    """``in 12 days``, ``in 5 hours``, ``in 3 minutes`` (``now`` or later: ``now``)."""
    seconds = int((when - now).total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds // size
            return f"in {n} {unit}{'s' if n != 1 else ''}"
    return "now"


@dataclass(frozen=True)
class Standing:
    """A certificate's state at ``now`` with the facts behind it."""

    state: CertState
    not_after: dt.datetime
    now: dt.datetime
    revocation: Revocation | None = None
    #: Why revocation was not checked against a current CRL (``E_CRL_STALE``, ...), or None.
    crl_code: str | None = None

    @property
    def refused(self) -> bool:
        """True when a node refuses the holder of this certificate now."""
        return self.state in REFUSED

    @property
    def days_left(self) -> int:
        """Whole days until the certificate ends (negative once it has)."""
        return (self.not_after - self.now).days

    def describe(self) -> str:
        """One line for a table: ``revoked 2026-12-01 (keyCompromise)``, ``expires 2026-12-10
        08:00 UTC (in 7 days)``, ``valid until 2027-11-22``, ..."""
        if self.revocation is not None:
            return f"revoked {self.revocation.at:%Y-%m-%d} ({self.revocation.reason})"
        if self.state is CertState.EXPIRED:
            return f"expired {self.not_after:%Y-%m-%d %H:%M} UTC"
        if self.state is CertState.NOT_YET_VALID:
            return "not valid yet"
        if self.state is CertState.NO_CURRENT_CRL:
            return f"unchecked: no current CRL ({self.crl_code})"
        if self.state is CertState.EXPIRES_SOON:
            return (
                f"expires {self.not_after:%Y-%m-%d %H:%M} UTC "
                f"({time_until(self.not_after, self.now)})"
            )
        return f"valid until {self.not_after:%Y-%m-%d}"

    def as_json(self) -> dict[str, Any]:
        """Plain JSON-able view (``cert_*`` fields of listings)."""
        return {
            "cert_state": self.state.value,
            "cert_days_left": self.days_left,
            "cert_revoked_at": self.revocation.at.isoformat() if self.revocation else None,
            "cert_revocation_reason": self.revocation.reason if self.revocation else None,
            "crl_code": self.crl_code,
        }


def _issuer_of(
    cert: x509.Certificate, candidates: Sequence[x509.Certificate]
) -> x509.Certificate | None:
    for ca in candidates:
        if ca.subject != cert.issuer:
            continue
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return ca
    return None


def certificate_standing(
    cert: x509.Certificate,
    trust: TrustStore,
    now: dt.datetime,
    *,
    issuers: Sequence[x509.Certificate] = (),
    warn_days: int = EXPIRY_WARNING_DAYS,
) -> Standing:
    """Where ``cert`` stands at ``now`` against ``trust``'s CRLs.

    ``issuers`` are CA certificates that may have issued it besides the trust store's (an
    intermediate the node knows from its own chain). ``revoked`` when the issuer's newest
    correctly signed CRL lists it, even if that CRL is out of date (revocation is final); then
    ``expired``, ``not-yet-valid``, ``no-current-crl`` (no current CRL: a node refuses it),
    ``expires-soon`` (ends within ``warn_days``) and ``valid``. Never raises for a CRL problem:
    it is part of the answer (:attr:`Standing.crl_code`).
    """
    not_after = cert.not_valid_after_utc

    def standing(state: CertState, **kw: Any) -> Standing:
        return Standing(state, not_after, now, **kw)

    issuer = _issuer_of(cert, [*issuers, *trust.intermediates, *trust.roots])
    revocation = None
    crl_code: str | None = "E_CRL_MISSING" if issuer is None else None
    if issuer is not None:
        try:
            revocation = revocation_in(newest_crl(issuer, trust.crls), cert.serial_number)
            current_crl(issuer, trust.crls, now)
        except CertificateError as e:
            crl_code = e.code
    if revocation is not None:
        return standing(CertState.REVOKED, revocation=revocation, crl_code=crl_code)
    if now > not_after:
        return standing(CertState.EXPIRED, crl_code=crl_code)
    if now < cert.not_valid_before_utc:
        return standing(CertState.NOT_YET_VALID, crl_code=crl_code)
    if crl_code is not None:
        return standing(CertState.NO_CURRENT_CRL, crl_code=crl_code)
    if not_after - now <= dt.timedelta(days=warn_days):
        return standing(CertState.EXPIRES_SOON)
    return standing(CertState.VALID)
