"""Generator of deliberately bad (and a few good) certificates for the verification tests.

Nothing this module makes is committed: keys, certificates and CRLs are built in memory with
``cryptography``, from a ``now`` the caller passes, so every run is deterministic in time. The
well-formed certificates reuse :mod:`pki.profiles`; the broken ones use :func:`build_leaf`, which
starts from the same profile and lets one field at a time be replaced or dropped.

:func:`scenarios` is the catalogue: one named scenario per verification outcome, each with the
error code :func:`pki.verify.verify_certificate` must raise (``None`` = must verify). To look at
the material with other tools::

    .venv/bin/python -m tests.pki.certgen /tmp/bad-certs [--now 2026-11-22T08:00:00+00:00]

writes every scenario's leaf, chain, trust roots and CRLs as PEM files plus an ``index.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pki.identity import (
    OID_REGISTERED_NETWORKS,
    OID_SECURE_SHELL_CLIENT,
    OID_SECURE_SHELL_SERVER,
    DeptCode,
    Role,
    encode_networks,
    parse_networks,
)
from pki.keys import PrivateKey
from pki.profiles import build_ca_certificate, build_end_entity_certificate, ca_name
from pki.verify import TrustStore

__all__ = [
    "CA",
    "DAY",
    "Scenario",
    "World",
    "build_leaf",
    "intermediate_ca",
    "leaf",
    "make_crl",
    "new_key",
    "root_ca",
    "scenario_names",
    "scenarios",
    "tamper_signature",
]

DAY = dt.timedelta(days=1)

#: Marker for "use what the certificate profile would put here".
_PROFILE = object()


def new_key(kind: str = "ec") -> PrivateKey:
    """A fresh EC P-256 key (fast) or, with ``kind="rsa"``, an RSA-2048 key."""
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


@dataclass(frozen=True)
class CA:
    """A CA certificate with its private key."""

    cert: x509.Certificate
    key: PrivateKey

    @property
    def name(self) -> x509.Name:
        return self.cert.subject


def root_ca(
    now: dt.datetime,
    *,
    name: str = "Certgen Root",
    key: PrivateKey | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    path_length: int | None = 1,
) -> CA:
    """A self-signed root, valid from ``now - 30 days`` to ``now + 3650 days`` by default."""
    key = key or new_key()
    subject = ca_name(name)
    cert = build_ca_certificate(
        subject=subject,
        public_key=key.public_key(),
        issuer=subject,
        issuer_key=key,
        serial=x509.random_serial_number(),
        not_before=not_before or now - 30 * DAY,
        not_after=not_after or now + 3650 * DAY,
        path_length=path_length,
    )
    return CA(cert, key)


def intermediate_ca(
    parent: CA,
    now: dt.datetime,
    *,
    name: str = "Certgen Issuing CA",
    key: PrivateKey | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> CA:
    """An issuing CA under ``parent`` (pathLen 0), valid 30 days back to 1825 days ahead."""
    key = key or new_key()
    cert = build_ca_certificate(
        subject=ca_name(name),
        public_key=key.public_key(),
        issuer=parent.name,
        issuer_key=parent.key,
        serial=x509.random_serial_number(),
        not_before=not_before or now - 30 * DAY,
        not_after=not_after or now + 1825 * DAY,
        path_length=0,
    )
    return CA(cert, key)


def leaf(
    issuer: CA,
    now: dt.datetime,
    *,
    code: str = "MZ330100",
    name: str = "杭州市民政局",
    role: Role = Role.DEPARTMENT,
    networks: Sequence[str] = ("10.33.1.0/24", "127.0.0.1"),
    key: PrivateKey | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> x509.Certificate:
    """A certificate exactly as the CA's profile builds it (pki.profiles)."""
    key = key or new_key()
    return build_end_entity_certificate(
        code=DeptCode(code),
        name=name,
        role=role,
        networks=parse_networks(networks),
        public_key=key.public_key(),
        issuer_cert=issuer.cert,
        issuer_key=issuer.key,
        serial=x509.random_serial_number(),
        not_before=not_before or now - DAY,
        not_after=not_after or now + 365 * DAY,
    )


def _key_usage(**on: bool) -> x509.KeyUsage:
    flags = dict.fromkeys(
        (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    flags.update(on)
    return x509.KeyUsage(**flags)


def identity_name(
    code: str = "MZ330100", name: str = "杭州市民政局", role: str = "department"
) -> x509.Name:
    """The profile's subject; any part given as ``""`` is left out (to break the identity)."""
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "CN")]
    if role:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role))
    if code:
        attrs.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, code))
    if name:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, name))
    return x509.Name(attrs)


def build_leaf(
    issuer: CA,
    now: dt.datetime,
    *,
    subject: x509.Name | None = None,
    role: Role = Role.DEPARTMENT,
    key: PrivateKey | None = None,
    key_usage: object = _PROFILE,
    ekus: object = _PROFILE,
    basic_constraints: object = _PROFILE,
    networks_der: object = _PROFILE,
    sign_key: PrivateKey | None = None,
) -> x509.Certificate:
    """A profile-like certificate with single fields replaced.

    ``key_usage``, ``ekus`` (a list of OIDs), ``basic_constraints`` and ``networks_der`` (raw
    extension value) each take a replacement value, or ``None`` to leave the extension out.
    ``sign_key`` signs instead of the issuer's key (a forged certificate).
    """
    key = key or new_key()
    public_key = key.public_key()
    if key_usage is _PROFILE:
        key_usage = _key_usage(digital_signature=True, key_agreement=True)
    if ekus is _PROFILE:
        ekus = [
            ExtendedKeyUsageOID.CLIENT_AUTH,
            OID_SECURE_SHELL_CLIENT,
            ExtendedKeyUsageOID.EMAIL_PROTECTION,
        ]
        if role is Role.NODE:
            ekus += [ExtendedKeyUsageOID.SERVER_AUTH, OID_SECURE_SHELL_SERVER]
    if basic_constraints is _PROFILE:
        basic_constraints = x509.BasicConstraints(ca=False, path_length=None)
    if networks_der is _PROFILE:
        networks_der = encode_networks(parse_networks(["10.33.1.0/24"]))
    subject = subject or identity_name(role=role.value)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - DAY)
        .not_valid_after(now + 365 * DAY)
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name("MZ330100")]), False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), False
        )
    )
    if basic_constraints is not None:
        assert isinstance(basic_constraints, x509.BasicConstraints)
        builder = builder.add_extension(basic_constraints, critical=True)
    if key_usage is not None:
        assert isinstance(key_usage, x509.KeyUsage)
        builder = builder.add_extension(key_usage, critical=True)
    if ekus is not None:
        assert isinstance(ekus, list)
        builder = builder.add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
    if networks_der is not None:
        assert isinstance(networks_der, bytes)
        builder = builder.add_extension(
            x509.UnrecognizedExtension(OID_REGISTERED_NETWORKS, networks_der), critical=False
        )
    return builder.sign(sign_key or issuer.key, hashes.SHA256())


def tamper_signature(cert: x509.Certificate) -> x509.Certificate:
    """The same certificate with one bit of the signature value flipped.

    The last byte of the DER encoding belongs to the signature (the outer SEQUENCE ends with
    the signatureValue BIT STRING), so the to-be-signed part stays intact and parses.
    """
    der = bytearray(cert.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01
    return x509.load_der_x509_certificate(bytes(der))


def make_crl(
    issuer: CA,
    now: dt.datetime,
    *,
    revoked: Iterable[x509.Certificate] = (),
    number: int = 1,
    last_update: dt.datetime | None = None,
    next_update: dt.datetime | None = None,
    sign_key: PrivateKey | None = None,
) -> x509.CertificateRevocationList:
    """A CRL naming ``issuer``: fresh (``now - 1h`` .. ``now + 7d``) unless told otherwise.

    ``sign_key`` signs with another key (a CRL forged in the issuer's name).
    """
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.name)
        .last_update(last_update or now - dt.timedelta(hours=1))
        .next_update(next_update or now + 7 * DAY)
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    for cert in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(cert.serial_number)
            .revocation_date(now - dt.timedelta(hours=2))
            .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False)
            .build()
        )
    return builder.sign(sign_key or issuer.key, hashes.SHA256())


# --- the catalogue -----------------------------------------------------------------------------


@dataclass
class World:
    """A trusted root with an issuing intermediate, a foreign CA, and fresh CRLs at ``now``."""

    now: dt.datetime
    root: CA = field(init=False)
    inter: CA = field(init=False)
    other: CA = field(init=False)

    def __post_init__(self) -> None:
        self.root = root_ca(self.now, name="Certgen Ministry Root")
        self.inter = intermediate_ca(self.root, self.now, name="Certgen Issuing CA")
        self.other = root_ca(self.now, name="Certgen Other Root")

    def crls(
        self, *, revoked: Sequence[x509.Certificate] = ()
    ) -> tuple[x509.CertificateRevocationList, ...]:
        """Fresh CRLs of the intermediate and the root; ``revoked`` go on the right one."""
        inter_revoked = [c for c in revoked if c.issuer == self.inter.name]
        root_revoked = [c for c in revoked if c.issuer == self.root.name]
        return (
            make_crl(self.inter, self.now, revoked=inter_revoked),
            make_crl(self.root, self.now, revoked=root_revoked),
        )

    def trust(
        self,
        *,
        crls: Sequence[x509.CertificateRevocationList] | None = None,
        intermediates: Sequence[x509.Certificate] = (),
    ) -> TrustStore:
        return TrustStore(
            (self.root.cert,),
            tuple(intermediates),
            self.crls() if crls is None else tuple(crls),
        )


@dataclass(frozen=True)
class Scenario:
    """One call of verify_certificate and the outcome it must have."""

    name: str
    leaf: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    trust: TrustStore
    role: Role | None
    expect: str | None  # error code, or None when the certificate must verify
    why: str
    detail: str | None = None  # text the error's detail (the operator's log line) must contain


#: What a scenario builder returns: the leaf, the chain the holder sends, the relying party's trust.
_Built = tuple[x509.Certificate, tuple[x509.Certificate, ...], TrustStore]
_Builder = Callable[[World], _Built]
_CATALOGUE: list[tuple[str, str | None, Role | None, str, str | None, _Builder]] = []


def _scenario(
    name: str,
    expect: str | None,
    why: str,
    role: Role | None = Role.DEPARTMENT,
    *,
    detail: str | None = None,
) -> Callable[[_Builder], _Builder]:
    def register(fn: _Builder) -> _Builder:
        _CATALOGUE.append((name, expect, role, why, detail, fn))
        return fn

    return register


def scenario_names() -> list[str]:
    """Names of every scenario, without generating anything (for test parametrisation)."""
    return [name for name, *_ in _CATALOGUE]


def scenarios(now: dt.datetime) -> dict[str, Scenario]:
    """Build every scenario against one fresh :class:`World` at ``now``."""
    world = World(now)
    out: dict[str, Scenario] = {}
    for name, expect, role, why, detail, build in _CATALOGUE:
        cert, chain, trust = build(world)
        out[name] = Scenario(name, cert, chain, trust, role, expect, why, detail)
    return out


# Valid material: these must pass, or the failures below prove nothing.


@_scenario("valid-via-intermediate", None, "profile certificate, chain sent by the holder")
def _valid(w: World) -> _Built:
    return leaf(w.inter, w.now), (w.inter.cert,), w.trust()


@_scenario("valid-intermediate-in-trust-store", None, "the relying party knows the intermediate")
def _valid_known_inter(
    w: World,
) -> _Built:
    return leaf(w.inter, w.now), (), w.trust(intermediates=[w.inter.cert])


@_scenario("valid-issued-by-root", None, "a root-only CA issues directly")
def _valid_root(w: World) -> _Built:
    return leaf(w.root, w.now), (), w.trust()


@_scenario("valid-node", None, "a node certificate where a node is required", Role.NODE)
def _valid_node(w: World) -> _Built:
    return leaf(w.inter, w.now, code="NODE01", role=Role.NODE), (w.inter.cert,), w.trust()


@_scenario("valid-any-role", None, "role=None (auditor) accepts a node certificate", None)
def _valid_any(w: World) -> _Built:
    return leaf(w.inter, w.now, code="NODE01", role=Role.NODE), (w.inter.cert,), w.trust()


@_scenario("valid-rsa-leaf", None, "RSA department key")
def _valid_rsa(w: World) -> _Built:
    return leaf(w.inter, w.now, key=new_key("rsa")), (w.inter.cert,), w.trust()


@_scenario("valid-newest-crl-wins", None, "an old stale CRL next to a fresh one is ignored")
def _valid_newest(w: World) -> _Built:
    old = make_crl(w.inter, w.now, number=1, last_update=w.now - 30 * DAY, next_update=w.now - DAY)
    fresh = make_crl(w.inter, w.now, number=2)
    root_crl = make_crl(w.root, w.now)
    return leaf(w.inter, w.now), (w.inter.cert,), w.trust(crls=[old, fresh, root_crl])


@_scenario("valid-custom-builder-defaults", None, "build_leaf with nothing replaced")
def _valid_custom(w: World) -> _Built:
    return build_leaf(w.inter, w.now), (w.inter.cert,), w.trust()


@_scenario("valid-forged-crl-ignored", None, "a forged CRL beside the genuine one changes nothing")
def _valid_forged(w: World) -> _Built:
    cert = leaf(w.inter, w.now)
    # The forger's CRL has the higher number: it must not win (and must not revoke).
    forged = make_crl(w.inter, w.now, revoked=[cert], number=99, sign_key=new_key())
    return cert, (w.inter.cert,), w.trust(crls=[forged, *w.crls()])


# E_CHAIN


@_scenario("other-ca", "E_CHAIN", "issued by a CA the relying party does not trust")
def _other_ca(w: World) -> _Built:
    return leaf(w.other, w.now), (), w.trust()


@_scenario("impostor-root", "E_CHAIN", "a CA with the ministry root's exact name but its own key")
def _impostor(w: World) -> _Built:
    fake = root_ca(w.now, name="Certgen Ministry Root")
    return leaf(fake, w.now), (fake.cert,), w.trust()


@_scenario("tampered-signature", "E_CHAIN", "one bit of the CA's signature flipped")
def _tampered(w: World) -> _Built:
    return tamper_signature(leaf(w.inter, w.now)), (w.inter.cert,), w.trust()


@_scenario("forged-with-right-names", "E_CHAIN", "right issuer name, signed by another key")
def _forged(w: World) -> _Built:
    return build_leaf(w.inter, w.now, sign_key=new_key()), (w.inter.cert,), w.trust()


@_scenario("issued-by-department", "E_CHAIN", "a department certificate used as a CA")
def _by_dept(w: World) -> _Built:
    dept_key = new_key()
    dept = leaf(w.inter, w.now, code="MZ000001", key=dept_key)
    sub = leaf(CA(dept, dept_key), w.now)
    return sub, (dept, w.inter.cert), w.trust()


@_scenario("missing-intermediate", "E_CHAIN", "the issuing CA is neither sent nor known")
def _missing_inter(w: World) -> _Built:
    return leaf(w.inter, w.now), (), w.trust()


# Validity periods


@_scenario("expired", "E_EXPIRED", "ended yesterday")
def _expired(w: World) -> _Built:
    cert = leaf(w.inter, w.now, not_before=w.now - 400 * DAY, not_after=w.now - DAY)
    return cert, (w.inter.cert,), w.trust()


@_scenario("not-yet-valid", "E_NOT_YET_VALID", "starts tomorrow")
def _future(w: World) -> _Built:
    cert = leaf(w.inter, w.now, not_before=w.now + DAY, not_after=w.now + 30 * DAY)
    return cert, (w.inter.cert,), w.trust()


@_scenario(
    "expired-intermediate", "E_EXPIRED", "the issuing CA ended yesterday", detail="Issuing CA"
)
def _expired_inter(w: World) -> _Built:
    inter = intermediate_ca(
        w.root, w.now, key=w.inter.key, not_before=w.now - 400 * DAY, not_after=w.now - DAY
    )
    return leaf(inter, w.now), (inter.cert,), w.trust()


@_scenario(
    "not-yet-valid-intermediate",
    "E_NOT_YET_VALID",
    "the issuing CA starts tomorrow",
    detail="Issuing CA",
)
def _future_inter(w: World) -> _Built:
    inter = intermediate_ca(
        w.root, w.now, key=w.inter.key, not_before=w.now + DAY, not_after=w.now + 400 * DAY
    )
    return leaf(inter, w.now), (inter.cert,), w.trust()


@_scenario(
    "expired-root", "E_EXPIRED", "the trusted root itself ended yesterday", detail="Ministry Root"
)
def _expired_root(w: World) -> _Built:
    root = root_ca(w.now, key=w.root.key, name="Certgen Ministry Root", not_after=w.now - DAY)
    trust = TrustStore((root.cert,), (), w.crls())
    return leaf(w.inter, w.now), (w.inter.cert,), trust


# Revocation


@_scenario("revoked", "E_REVOKED", "listed on the intermediate's CRL")
def _revoked(w: World) -> _Built:
    cert = leaf(w.inter, w.now)
    return cert, (w.inter.cert,), w.trust(crls=w.crls(revoked=[cert]))


@_scenario("revoked-by-root", "E_REVOKED", "root-issued certificate on the root's CRL")
def _revoked_root(w: World) -> _Built:
    cert = leaf(w.root, w.now)
    return cert, (), w.trust(crls=w.crls(revoked=[cert]))


@_scenario(
    "revoked-intermediate",
    "E_REVOKED",
    "the issuing CA is on the root's CRL",
    detail="keyCompromise",
)
def _revoked_inter(w: World) -> _Built:
    return leaf(w.inter, w.now), (w.inter.cert,), w.trust(crls=w.crls(revoked=[w.inter.cert]))


@_scenario("crl-missing", "E_CRL_MISSING", "no CRL at all (fail closed)")
def _no_crl(w: World) -> _Built:
    return leaf(w.inter, w.now), (w.inter.cert,), w.trust(crls=[])


@_scenario("crl-missing-for-issuer", "E_CRL_MISSING", "only the root's CRL; none from the issuer")
def _no_inter_crl(w: World) -> _Built:
    return leaf(w.inter, w.now), (w.inter.cert,), w.trust(crls=[make_crl(w.root, w.now)])


@_scenario("crl-missing-for-root", "E_CRL_MISSING", "the intermediate's status is unknown")
def _no_root_crl(w: World) -> _Built:
    return leaf(w.inter, w.now), (w.inter.cert,), w.trust(crls=[make_crl(w.inter, w.now)])


@_scenario("crl-only-other-ca", "E_CRL_MISSING", "a CRL of an unrelated CA does not count")
def _other_crl(w: World) -> _Built:
    crls = [make_crl(w.other, w.now), make_crl(w.root, w.now)]
    return leaf(w.inter, w.now), (w.inter.cert,), w.trust(crls=crls)


@_scenario("crl-stale", "E_CRL_STALE", "the CRL's nextUpdate passed yesterday")
def _stale(w: World) -> _Built:
    stale = make_crl(w.inter, w.now, last_update=w.now - 8 * DAY, next_update=w.now - DAY)
    return leaf(w.inter, w.now), (w.inter.cert,), w.trust(crls=[stale, make_crl(w.root, w.now)])


@_scenario("crl-from-the-future", "E_CRL_STALE", "the CRL's lastUpdate is tomorrow")
def _future_crl(w: World) -> _Built:
    crl = make_crl(w.inter, w.now, last_update=w.now + DAY, next_update=w.now + 8 * DAY)
    return leaf(w.inter, w.now), (w.inter.cert,), w.trust(crls=[crl, make_crl(w.root, w.now)])


@_scenario("root-crl-stale", "E_CRL_STALE", "the root's CRL (for the intermediate) is stale")
def _stale_root(w: World) -> _Built:
    stale = make_crl(w.root, w.now, last_update=w.now - 8 * DAY, next_update=w.now - DAY)
    return leaf(w.inter, w.now), (w.inter.cert,), w.trust(crls=[make_crl(w.inter, w.now), stale])


@_scenario("crl-wrong-key", "E_CRL_INVALID", "a CRL in the issuer's name signed by another key")
def _forged_crl(w: World) -> _Built:
    forged = make_crl(w.inter, w.now, sign_key=new_key())
    return leaf(w.inter, w.now), (w.inter.cert,), w.trust(crls=[forged, make_crl(w.root, w.now)])


@_scenario("crl-wrong-key-type", "E_CRL_INVALID", "a CRL in the issuer's name signed with RSA")
def _rsa_crl(w: World) -> _Built:
    forged = make_crl(w.inter, w.now, sign_key=new_key("rsa"))
    return leaf(w.inter, w.now), (w.inter.cert,), w.trust(crls=[forged, make_crl(w.root, w.now)])


# Key usage and role


@_scenario(
    "no-digital-signature",
    "E_KEY_USAGE",
    "keyUsage is keyAgreement only",
    detail="lacks digitalSignature",
)
def _no_ds(w: World) -> _Built:
    cert = build_leaf(w.inter, w.now, key_usage=_key_usage(key_agreement=True))
    return cert, (w.inter.cert,), w.trust()


@_scenario("no-key-usage", "E_KEY_USAGE", "no keyUsage extension at all", detail="no keyUsage")
def _no_ku(w: World) -> _Built:
    return build_leaf(w.inter, w.now, key_usage=None), (w.inter.cert,), w.trust()


@_scenario(
    "eku-without-client-auth", "E_KEY_USAGE", "EKU lacks clientAuth", detail="1.3.6.1.5.5.7.3.2"
)
def _no_client_auth(w: World) -> _Built:
    ekus = [OID_SECURE_SHELL_CLIENT, ExtendedKeyUsageOID.EMAIL_PROTECTION]
    return build_leaf(w.inter, w.now, ekus=ekus), (w.inter.cert,), w.trust()


@_scenario(
    "eku-without-ssh-client",
    "E_KEY_USAGE",
    "EKU lacks secureShellClient",
    detail="1.3.6.1.5.5.7.3.21",
)
def _no_ssh(w: World) -> _Built:
    ekus = [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION]
    return build_leaf(w.inter, w.now, ekus=ekus), (w.inter.cert,), w.trust()


@_scenario("no-eku", "E_KEY_USAGE", "no extendedKeyUsage extension", detail="no extendedKeyUsage")
def _no_eku(w: World) -> _Built:
    return build_leaf(w.inter, w.now, ekus=None), (w.inter.cert,), w.trust()


@_scenario(
    "ca-as-leaf",
    "E_KEY_USAGE",
    "a CA certificate carrying a department identity",
    detail="CA certificate",
)
def _ca_leaf(w: World) -> _Built:
    cert = build_leaf(
        w.inter,
        w.now,
        basic_constraints=x509.BasicConstraints(ca=True, path_length=0),
        key_usage=_key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True),
    )
    return cert, (w.inter.cert,), w.trust()


@_scenario(
    "department-as-node",
    "E_KEY_USAGE",
    "department certificate where a node is required",
    Role.NODE,
)
def _dept_as_node(w: World) -> _Built:
    return leaf(w.inter, w.now), (w.inter.cert,), w.trust()


@_scenario("node-as-department", "E_KEY_USAGE", "node certificate where a department is required")
def _node_as_dept(w: World) -> _Built:
    return leaf(w.inter, w.now, code="NODE01", role=Role.NODE), (w.inter.cert,), w.trust()


@_scenario(
    "node-without-server-auth",
    "E_KEY_USAGE",
    "OU=node but EKU of a department",
    Role.NODE,
    detail="1.3.6.1.5.5.7.3.1",
)
def _node_no_server(w: World) -> _Built:
    cert = build_leaf(w.inter, w.now, subject=identity_name(code="NODE01", role="node"))
    return cert, (w.inter.cert,), w.trust()


# Identity


@_scenario("identity-no-code", "E_IDENTITY", "subject without serialNumber")
def _no_code(w: World) -> _Built:
    return build_leaf(w.inter, w.now, subject=identity_name(code="")), (w.inter.cert,), w.trust()


@_scenario("identity-no-name", "E_IDENTITY", "subject without CN")
def _no_name(w: World) -> _Built:
    return build_leaf(w.inter, w.now, subject=identity_name(name="")), (w.inter.cert,), w.trust()


@_scenario("identity-unknown-role", "E_IDENTITY", "OU is not department or node")
def _bad_role(w: World) -> _Built:
    cert = build_leaf(w.inter, w.now, subject=identity_name(role="admin"))
    return cert, (w.inter.cert,), w.trust()


@_scenario("identity-path-traversal-code", "E_IDENTITY", "serialNumber '../x' (a path, not a code)")
def _bad_code(w: World) -> _Built:
    cert = build_leaf(w.inter, w.now, subject=identity_name(code="../x"))
    return cert, (w.inter.cert,), w.trust()


@_scenario("identity-two-codes", "E_IDENTITY", "two serialNumber attributes: ambiguous holder")
def _two_codes(w: World) -> _Built:
    subject = x509.Name(
        [
            *identity_name(),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, "RS330100"),
        ]
    )
    return build_leaf(w.inter, w.now, subject=subject), (w.inter.cert,), w.trust()


@_scenario("networks-bad-der", "E_IDENTITY", "registered-networks value is truncated DER")
def _nets_der(w: World) -> _Built:
    der = encode_networks(parse_networks(["10.0.0.0/8"]))[:-2]
    return build_leaf(w.inter, w.now, networks_der=der), (w.inter.cert,), w.trust()


@_scenario("networks-host-bits", "E_IDENTITY", "a registered network with host bits set")
def _nets_host(w: World) -> _Built:
    text = b"10.0.0.1/8"
    der = b"\x30" + bytes([len(text) + 2]) + b"\x16" + bytes([len(text)]) + text
    return build_leaf(w.inter, w.now, networks_der=der), (w.inter.cert,), w.trust()


@_scenario("networks-wrong-type", "E_IDENTITY", "UTF8String instead of IA5String")
def _nets_type(w: World) -> _Built:
    text = b"10.0.0.0/8"
    der = b"\x30" + bytes([len(text) + 2]) + b"\x0c" + bytes([len(text)]) + text
    return build_leaf(w.inter, w.now, networks_der=der), (w.inter.cert,), w.trust()


@_scenario("networks-trailing-garbage", "E_IDENTITY", "bytes after the SEQUENCE")
def _nets_tail(w: World) -> _Built:
    der = encode_networks(parse_networks(["10.0.0.0/8"])) + b"\x00"
    return build_leaf(w.inter, w.now, networks_der=der), (w.inter.cert,), w.trust()


# Trust store


@_scenario("empty-trust-store", "E_TRUST", "no root configured (fail closed)")
def _empty(w: World) -> _Built:
    return leaf(w.inter, w.now), (w.inter.cert,), TrustStore(())


# --- command line ------------------------------------------------------------------------------


def _pem(objs: Iterable[x509.Certificate | x509.CertificateRevocationList]) -> bytes:
    return b"".join(o.public_bytes(serialization.Encoding.PEM) for o in objs)


def write_scenarios(out: Path, now: dt.datetime) -> dict[str, Scenario]:
    """Write every scenario as PEM files under ``out/<name>/`` and an ``index.json``."""
    built = scenarios(now)
    index = {}
    for name, sc in built.items():
        d = out / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "leaf.pem").write_bytes(_pem([sc.leaf]))
        (d / "chain.pem").write_bytes(_pem(sc.chain))
        (d / "roots.pem").write_bytes(_pem(sc.trust.roots))
        (d / "intermediates.pem").write_bytes(_pem(sc.trust.intermediates))
        (d / "crls.pem").write_bytes(_pem(sc.trust.crls))
        index[name] = {
            "expect": sc.expect,
            "role": sc.role.value if sc.role else None,
            "why": sc.why,
        }
    (out / "index.json").write_text(
        json.dumps({"now": now.isoformat(), "scenarios": index}, ensure_ascii=False, indent=2),
        encoding="utf-8",
    )
    return built


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("out", type=Path, help="output directory")
    parser.add_argument("--now", help="ISO time the material is valid at (default: now)")
    args = parser.parse_args(argv)
    now = dt.datetime.fromisoformat(args.now) if args.now else dt.datetime.now(dt.UTC)
    built = write_scenarios(args.out, now)
    print(f"wrote {len(built)} scenarios to {args.out}")


if __name__ == "__main__":
    main()
