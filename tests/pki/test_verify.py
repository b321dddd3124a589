"""pki.verify.verify_certificate: every failure code, from certificates tests/pki/certgen.py builds.

The catalogue test runs each named scenario and asserts the exact code; the tests after it pin
details a table cannot express (boundaries, what the peer sees, the identity returned).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from exchange_common.errors import CertificateError, InputError
from pki import verify as verify_module
from pki.identity import Role, parse_networks
from pki.keys import fingerprint
from pki.verify import TrustStore, load_crls, verify_certificate
from tests.conftest import NOW, CAFixture
from tests.pki import certgen
from tests.pki.certgen import DAY, Scenario, World

#: Every code verify_certificate documents; the catalogue must exercise each one.
DOCUMENTED_CODES = {
    "E_NOT_YET_VALID",
    "E_EXPIRED",
    "E_KEY_USAGE",
    "E_CHAIN",
    "E_CRL_MISSING",
    "E_CRL_STALE",
    "E_CRL_INVALID",
    "E_REVOKED",
    "E_IDENTITY",
    "E_TRUST",
}


@pytest.fixture(scope="module")
def catalogue() -> dict[str, Scenario]:
    return certgen.scenarios(NOW)


@pytest.fixture(scope="module")
def world() -> World:
    return World(NOW)


def _verify(sc: Scenario) -> object:
    return verify_certificate(sc.leaf, sc.trust, now=NOW, chain=sc.chain, role=sc.role)


@pytest.mark.parametrize("name", certgen.scenario_names())
def test_scenario(catalogue: dict[str, Scenario], name: str) -> None:
    sc = catalogue[name]
    if sc.expect is None:
        ident = _verify(sc)
        assert ident is not None
        return
    with pytest.raises(CertificateError) as info:
        _verify(sc)
    assert info.value.code == sc.expect, f"{name}: {sc.why}: got {info.value!r} {info.value.detail}"
    if sc.detail is not None:
        assert info.value.detail is not None
        assert sc.detail in info.value.detail


def test_catalogue_covers_every_documented_code(catalogue: dict[str, Scenario]) -> None:
    assert {sc.expect for sc in catalogue.values()} - {None} == DOCUMENTED_CODES
    # And there is valid material next to the broken material.
    assert sum(sc.expect is None for sc in catalogue.values()) >= 5


def test_valid_identity_and_chain(world: World) -> None:
    cert = certgen.leaf(world.inter, NOW, networks=("10.33.1.0/24", "127.0.0.1", "2001:db8::/32"))
    ident = verify_certificate(cert, world.trust(), now=NOW, chain=[world.inter.cert])
    assert ident.code == "MZ330100"
    assert ident.name == "杭州市民政局"
    assert ident.role is Role.DEPARTMENT
    assert ident.networks == tuple(parse_networks(["10.33.1.0/24", "127.0.0.1", "2001:db8::/32"]))
    assert ident.serial == format(cert.serial_number, "X")
    assert ident.fingerprint == fingerprint(cert)
    assert ident.chain == (cert, world.inter.cert, world.root.cert)
    assert ident.allows_address("10.33.1.200")
    assert ident.allows_address("2001:db8::42")
    assert not ident.allows_address("10.33.2.1")


def test_irrelevant_chain_certificates_are_ignored(world: World) -> None:
    cert = certgen.leaf(world.inter, NOW)
    junk = [world.other.cert, certgen.leaf(world.other, NOW), world.inter.cert]
    ident = verify_certificate(cert, world.trust(), now=NOW, chain=junk)
    assert ident.chain[-1] == world.root.cert


@pytest.mark.parametrize(
    ("offset", "code"),
    [(dt.timedelta(0), None), (dt.timedelta(seconds=1), "E_EXPIRED")],
)
def test_expiry_boundary(world: World, offset: dt.timedelta, code: str | None) -> None:
    not_after = NOW + DAY
    cert = certgen.leaf(world.inter, NOW, not_after=not_after)
    # The CRL must stay fresh at the boundary so only the certificate's own expiry counts.
    crls = [certgen.make_crl(world.inter, NOW), certgen.make_crl(world.root, NOW)]
    trust = world.trust(crls=crls)
    at = not_after + offset
    if code is None:
        verify_certificate(cert, trust, now=at, chain=[world.inter.cert])
    else:
        with pytest.raises(CertificateError) as info:
            verify_certificate(cert, trust, now=at, chain=[world.inter.cert])
        assert info.value.code == code


@pytest.mark.parametrize(
    ("offset", "code"),
    [(dt.timedelta(0), None), (dt.timedelta(seconds=1), "E_CRL_STALE")],
)
def test_crl_next_update_boundary(world: World, offset: dt.timedelta, code: str | None) -> None:
    cert = certgen.leaf(world.inter, NOW)
    next_update = NOW + DAY
    crls = [
        certgen.make_crl(world.inter, NOW, next_update=next_update),
        certgen.make_crl(world.root, NOW, next_update=NOW + 30 * DAY),
    ]
    trust = world.trust(crls=crls)
    at = next_update + offset
    if code is None:
        verify_certificate(cert, trust, now=at, chain=[world.inter.cert])
    else:
        with pytest.raises(CertificateError) as info:
            verify_certificate(cert, trust, now=at, chain=[world.inter.cert])
        assert info.value.code == code


def test_revocation_by_newest_crl(world: World) -> None:
    """A newer CRL that lists the certificate wins over an older one that does not."""
    cert = certgen.leaf(world.inter, NOW)
    old = certgen.make_crl(world.inter, NOW, number=5)
    new = certgen.make_crl(world.inter, NOW, number=6, revoked=[cert])
    trust = world.trust(crls=[new, old, certgen.make_crl(world.root, NOW)])
    with pytest.raises(CertificateError) as info:
        verify_certificate(cert, trust, now=NOW, chain=[world.inter.cert])
    assert info.value.code == "E_REVOKED"


def test_peer_sees_code_not_details(world: World) -> None:
    """The message (what a peer may be told) names no serial; the detail (the log) does."""
    cert = certgen.leaf(world.inter, NOW)
    trust = world.trust(crls=world.crls(revoked=[cert]))
    with pytest.raises(CertificateError) as info:
        verify_certificate(cert, trust, now=NOW, chain=[world.inter.cert])
    serial = format(cert.serial_number, "X")
    assert str(info.value) == "certificate has been revoked (E_REVOKED)"
    assert info.value.detail is not None
    assert serial in info.value.detail
    assert "keyCompromise" in info.value.detail
    assert info.value.diagnostics().startswith("certificate has been revoked (E_REVOKED)\n  cause:")


def test_require_crl_false_skips_only_revocation(world: World) -> None:
    cert = certgen.leaf(world.inter, NOW)
    no_crls = world.trust(crls=[])
    ident = verify_certificate(cert, no_crls, now=NOW, chain=[world.inter.cert], require_crl=False)
    assert ident.code == "MZ330100"
    # ...but the chain is still checked.
    with pytest.raises(CertificateError) as info:
        verify_certificate(certgen.leaf(world.other, NOW), no_crls, now=NOW, require_crl=False)
    assert info.value.code == "E_CHAIN"


def test_default_role_is_department(world: World) -> None:
    node = certgen.leaf(world.inter, NOW, code="NODE01", role=Role.NODE)
    with pytest.raises(CertificateError) as info:
        verify_certificate(node, world.trust(), now=NOW, chain=[world.inter.cert])
    assert info.value.code == "E_KEY_USAGE"
    ident = verify_certificate(node, world.trust(), now=NOW, chain=[world.inter.cert], role=None)
    assert ident.role is Role.NODE


# --- against the real CA ----------------------------------------------------------------------


def test_ca_issued_certificates_verify_then_fail_when_revoked(inter_ca: CAFixture) -> None:
    dept = inter_ca.issue("MZ330100", "杭州市民政局", ("10.33.1.0/24",))
    node = inter_ca.issue("NODE01", "杭州核对节点", role=Role.NODE)
    now = dt.datetime.now(dt.UTC)
    trust = inter_ca.trust()
    ident = verify_certificate(dept.certificate, trust, now=now, chain=dept.chain[1:])
    assert ident.networks == tuple(parse_networks(["10.33.1.0/24"]))
    verify_certificate(node.certificate, trust, now=now, chain=node.chain[1:], role=Role.NODE)

    inter_ca.ca.revoke(serial=dept.record.serial)
    with pytest.raises(CertificateError) as info:
        verify_certificate(dept.certificate, inter_ca.trust(), now=now, chain=dept.chain[1:])
    assert info.value.code == "E_REVOKED"
    # The old CRL does not know: revocation reaches relying parties only with a new CRL.
    verify_certificate(dept.certificate, trust, now=now, chain=dept.chain[1:])


def test_ca_crl_goes_stale_after_its_days(test_ca: CAFixture) -> None:
    issued = test_ca.issue("MZ330100")
    now = dt.datetime.now(dt.UTC)
    test_ca.ca.crl(days=2, now=now)
    trust = TrustStore((test_ca.ca.root,), (), tuple(load_crls(test_ca.dir / "crl.pem")))
    verify_certificate(issued.certificate, trust, now=now + DAY)
    with pytest.raises(CertificateError) as info:
        verify_certificate(issued.certificate, trust, now=now + 2 * DAY + dt.timedelta(seconds=1))
    assert info.value.code == "E_CRL_STALE"


# --- loading trust material -------------------------------------------------------------------


def _pem(*objs: x509.Certificate | x509.CertificateRevocationList) -> bytes:
    return b"".join(o.public_bytes(serialization.Encoding.PEM) for o in objs)


def test_trust_store_from_files_splits_roots_and_intermediates(
    world: World, tmp_path: Path
) -> None:
    (tmp_path / "trust.pem").write_bytes(_pem(world.root.cert, world.inter.cert))
    crls = world.crls()
    (tmp_path / "crl.pem").write_bytes(_pem(*crls))
    store = TrustStore.from_files(tmp_path / "trust.pem", tmp_path / "crl.pem")
    assert store.roots == (world.root.cert,)
    assert store.intermediates == (world.inter.cert,)
    assert len(store.crls) == 2
    # The intermediate from the trust file is enough: the holder need not send it.
    verify_certificate(certgen.leaf(world.inter, NOW), store, now=NOW)


def test_load_crls_accepts_der(world: World, tmp_path: Path) -> None:
    crl = certgen.make_crl(world.root, NOW)
    (tmp_path / "crl.der").write_bytes(crl.public_bytes(serialization.Encoding.DER))
    assert load_crls(tmp_path / "crl.der") == [crl]


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"not a crl", "E_CRL_FORMAT"),
        (b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n", "E_CRL_FORMAT"),
        (None, "E_NOT_FOUND"),
    ],
)
def test_load_crls_errors(tmp_path: Path, content: bytes | None, code: str) -> None:
    path = tmp_path / "crl.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError) as info:
        load_crls(path)
    assert info.value.code == code


def test_crl_signature_memo_never_turns_a_forged_crl_valid(catalogue: dict[str, Scenario]) -> None:
    """CRL signatures are remembered per (CRL, issuer): a CRL in the issuer's name signed by
    another key stays refused however often it is checked, and checking the valid material
    first or after it changes nothing."""
    forged, valid = (
        catalogue["crl-wrong-key"],
        next(sc for sc in catalogue.values() if sc.expect is None),
    )
    for _ in range(3):
        assert _verify(valid) is not None
        with pytest.raises(CertificateError) as info:
            _verify(forged)
        assert info.value.code == "E_CRL_INVALID"
    # the memo is per issuer: a CRL that verifies under its issuer does not under another key
    cas = [*valid.trust.roots, *valid.trust.intermediates]
    pairs = [(crl, ca) for crl in valid.trust.crls for ca in cas if crl.issuer == ca.subject]
    assert pairs
    for crl, ca in pairs:
        assert verify_module._crl_signed_by(crl, ca)
        assert not verify_module._crl_signed_by(crl, valid.leaf)
        assert verify_module._crl_signed_by(crl, ca)
