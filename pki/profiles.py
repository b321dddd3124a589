"""Certificate profiles: exactly which fields and extensions each kind of certificate carries.

Pure functions: keys, names, serials and ``now`` come in, signed certificates come out.
The profiles are chosen so that three independent verifiers accept them:

- cryptography's RFC 5280 client verifier (needs ``clientAuth`` in EKU, AKI/SKI, critical
  basicConstraints);
- asyncssh's X.509 SSH login (needs ``secureShellClient`` in EKU and the login name as a SAN
  rfc822Name);
- stock ``openssl verify`` and ``openssl cms -verify`` (the latter's default purpose wants
  ``emailProtection``, so end-entity certificates carry it: it lets auditors check bundle
  signatures without ``-purpose any``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pki.identity import (
    OID_REGISTERED_NETWORKS,
    OID_SECURE_SHELL_CLIENT,
    OID_SECURE_SHELL_SERVER,
    DeptCode,
    IPNetwork,
    Role,
    encode_networks,
)
from pki.keys import PrivateKey, PublicKey

__all__ = [
    "BACKDATE",
    "build_ca_certificate",
    "build_end_entity_certificate",
    "ca_name",
    "end_entity_name",
]

#: Certificates start slightly in the past so a peer whose clock lags a little accepts them.
BACKDATE = dt.timedelta(minutes=5)


def _key_usage(
    *,
    digital_signature: bool = False,
    key_encipherment: bool = False,
    key_agreement: bool = False,
    cert_sign: bool = False,
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=key_agreement,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def ca_name(common_name: str) -> x509.Name:
    """Subject of a CA certificate: ``C=CN, O=<name>, CN=<name>``."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, common_name),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def end_entity_name(code: DeptCode, name: str, role: Role) -> x509.Name:
    """Subject of a department or node certificate (see pki.identity for the profile).

    ``serialNumber`` is a PrintableString, whose alphabet lacks ``_``; a code with ``_`` (which
    department codes allow) is encoded as UTF8String instead of failing to encode.
    """
    code_type = _ASN1Type.UTF8String if "_" in code else _ASN1Type.PrintableString
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role.value),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, code, _type=code_type),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )


def build_ca_certificate(
    *,
    subject: x509.Name,
    public_key: PublicKey,
    issuer: x509.Name,
    issuer_key: PrivateKey,
    serial: int,
    not_before: dt.datetime,
    not_after: dt.datetime,
    path_length: int | None,
) -> x509.Certificate:
    """A root (``issuer == subject``, signed by its own key) or intermediate CA certificate."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if issuer != subject:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def build_end_entity_certificate(
    *,
    code: DeptCode,
    name: str,
    role: Role,
    networks: Sequence[IPNetwork],
    public_key: PublicKey,
    issuer_cert: x509.Certificate,
    issuer_key: PrivateKey,
    serial: int,
    not_before: dt.datetime,
    not_after: dt.datetime,
    dns_names: Sequence[str] = (),
) -> x509.Certificate:
    """A department or node certificate fit for bundle signing, key wrapping and SSH login.

    Key usage: digitalSignature always; keyAgreement for EC keys (ECDH key wrapping of bundle
    content keys), keyEncipherment for RSA keys (RSA-OAEP wrapping).
    """
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        usage = _key_usage(digital_signature=True, key_agreement=True)
    elif isinstance(public_key, rsa.RSAPublicKey):
        usage = _key_usage(digital_signature=True, key_encipherment=True)
    else:  # pragma: no cover - guarded by the type and by CSR checks
        raise TypeError("unsupported key type")
    ekus = [
        ExtendedKeyUsageOID.CLIENT_AUTH,
        OID_SECURE_SHELL_CLIENT,
        ExtendedKeyUsageOID.EMAIL_PROTECTION,
    ]
    if role is Role.NODE:
        ekus += [ExtendedKeyUsageOID.SERVER_AUTH, OID_SECURE_SHELL_SERVER]
    sans: list[x509.GeneralName] = [x509.RFC822Name(code)]
    sans += [x509.DNSName(d) for d in dns_names]
    sans += [x509.IPAddress(net.network_address) for net in networks if net.num_addresses == 1]
    builder = (
        x509.CertificateBuilder()
        .subject_name(end_entity_name(code, name, role))
        .issuer_name(issuer_cert.subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if networks:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(OID_REGISTERED_NETWORKS, encode_networks(networks)),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())
