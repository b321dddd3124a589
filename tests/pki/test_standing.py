"""pki.standing: where a certificate stands at a given moment, against the CRLs a party holds.

Deterministic: a CA made at a fixed ``NOW``, CRLs signed at chosen times.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from pki.ca_input import parse_reason
from pki.standing import CertState, certificate_standing, time_until
from pki.verify import TrustStore, load_crls
from tests.conftest import NOW, CAFixture, make_ca
from tests.pki.certgen import DAY


@pytest.fixture
def ca(tmp_path: Path) -> Iterator[CAFixture]:
    fx = make_ca(tmp_path / "ca", intermediate=True, now=NOW)
    yield fx
    fx.ca.close()


def _trust(ca: CAFixture, signed: dt.datetime, *, days: int = 7) -> TrustStore:
    """The root only (as a node's trust file), with CRLs signed at ``signed``."""
    ca.ca.crl(now=signed, days=days)
    return TrustStore((ca.ca.root,), (), tuple(load_crls(ca.dir / "crl.pem")))


def test_valid_expiring_expired_and_not_yet_valid(ca: CAFixture) -> None:
    cert = ca.issue("MZ330100", now=NOW, days=100).certificate
    chain = ca.ca.chain  # the intermediate, as the node's own chain file carries it

    def state(at: dt.datetime, **kw: int) -> CertState:
        trust = _trust(ca, at)
        return certificate_standing(cert, trust, at, issuers=chain, **kw).state

    assert state(NOW + DAY) is CertState.VALID
    assert state(NOW + 70 * DAY) is CertState.EXPIRES_SOON  # 30 days left
    assert state(NOW + 69 * DAY) is CertState.VALID
    assert state(NOW + 69 * DAY, warn_days=31) is CertState.EXPIRES_SOON
    assert state(NOW + 101 * DAY) is CertState.EXPIRED
    assert state(NOW - DAY) is CertState.NOT_YET_VALID
    standing = certificate_standing(cert, _trust(ca, NOW + 90 * DAY), NOW + 90 * DAY, issuers=chain)
    assert standing.days_left == 10 and not standing.refused
    assert standing.describe() == "expires 2027-03-02 08:00 UTC (in 10 days)"


def test_revoked_even_when_the_crl_listing_it_is_out_of_date(ca: CAFixture) -> None:
    issued = ca.issue("MZ330100", now=NOW)
    cert = issued.certificate
    ca.ca.revoke(serial=ca.issue("RS330100", now=NOW).record.serial, now=NOW)  # another entry
    reason = parse_reason("keyCompromise")
    ca.ca.revoke(serial=issued.record.serial, reason=reason, now=NOW + DAY)
    trust = _trust(ca, NOW + DAY, days=1)
    later = NOW + 30 * DAY  # that CRL passed its nextUpdate long ago
    standing = certificate_standing(cert, trust, later, issuers=ca.ca.chain)
    assert standing.state is CertState.REVOKED and standing.refused
    assert standing.crl_code == "E_CRL_STALE"
    assert standing.revocation is not None and standing.revocation.reason == "keyCompromise"
    assert standing.describe() == "revoked 2026-11-23 (keyCompromise)"
    json = standing.as_json()
    assert json["cert_state"] == "revoked" and json["cert_revocation_reason"] == "keyCompromise"


@pytest.mark.parametrize(
    ("case", "code"),
    [("stale", "E_CRL_STALE"), ("no-crl", "E_CRL_MISSING"), ("issuer-unknown", "E_CRL_MISSING")],
)
def test_no_current_crl_is_a_refusal_not_active(ca: CAFixture, case: str, code: str) -> None:
    """Fail closed: without a current CRL a node refuses everyone, and the standing says so."""
    cert = ca.issue("MZ330100", now=NOW).certificate
    issuers = ca.ca.chain
    trust = _trust(ca, NOW, days=1)
    if case == "no-crl":
        trust = trust.with_crls([])
    elif case == "issuer-unknown":
        issuers = ()  # the intermediate is in neither the trust store nor the node's chain
    at = NOW + 3 * DAY if case == "stale" else NOW + DAY / 2
    standing = certificate_standing(cert, trust, at, issuers=issuers)
    assert standing.state is CertState.NO_CURRENT_CRL and standing.refused
    assert standing.crl_code == code
    assert standing.describe() == f"unchecked: no current CRL ({code})"


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (dt.timedelta(days=2, hours=5), "in 2 days"),
        (dt.timedelta(days=1), "in 1 day"),
        (dt.timedelta(hours=3, minutes=59), "in 3 hours"),
        (dt.timedelta(minutes=9, seconds=59), "in 9 minutes"),
        (dt.timedelta(seconds=30), "now"),
        (-dt.timedelta(days=1), "now"),
    ],
)
def test_time_until(delta: dt.timedelta, text: str) -> None:
    assert time_until(NOW + delta, NOW) == text
