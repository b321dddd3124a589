"""What a certificate says about its holder: department code, name, role, registered networks.

Certificate profile (see docs/pki.md):

- subject ``C=CN, OU=<role>, serialNumber=<department code>, CN=<department name>``; the name is
  UTF-8 (Chinese) and the code is a printable identifier that doubles as the SFTP login name.
- subjectAltName: ``rfc822Name=<code>`` (asyncssh matches X.509 SSH logins against it) and one
  ``iPAddress`` per registered single host.
- a non-critical private extension :data:`OID_REGISTERED_NETWORKS` listing every registered
  address or CIDR (部省 第五条 IP 备案) as ``SEQUENCE OF IA5String``, because SAN iPAddress cannot
  carry networks. The OID is under ``2.25`` (UUID-based, ITU-T X.667), which needs no registry.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NewType

from cryptography import x509
from cryptography.x509.oid import NameOID, ObjectIdentifier

from exchange_common.errors import CertificateError, InputError
from exchange_common.net import IPNetwork, in_networks

__all__ = [
    "OID_REGISTERED_NETWORKS",
    "OID_SECURE_SHELL_CLIENT",
    "OID_SECURE_SHELL_SERVER",
    "CertSerial",
    "CertifiedIdentity",
    "DeptCode",
    "IPNetwork",
    "Role",
    "decode_networks",
    "encode_networks",
    "identity_from_certificate",
    "parse_dept_code",
    "parse_networks",
    "serial_hex",
    "subject_text",
]

#: Registered network addresses of the holder (private arc, UUID a104db26-9c28-4900-…).
OID_REGISTERED_NETWORKS = ObjectIdentifier("2.25.214030921415507333414502641067311543995")
#: RFC 6187 extended key usages for SSH X.509 login.
OID_SECURE_SHELL_CLIENT = ObjectIdentifier("1.3.6.1.5.5.7.3.21")
OID_SECURE_SHELL_SERVER = ObjectIdentifier("1.3.6.1.5.5.7.3.22")

DeptCode = NewType("DeptCode", str)
CertSerial = NewType("CertSerial", str)

_CODE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")


class Role(StrEnum):
    """What a certificate admits its holder as."""

    DEPARTMENT = "department"
    NODE = "node"


def parse_dept_code(text: str) -> DeptCode:
    """Validate a department code: 1-32 of ``A-Z a-z 0-9 _ -``, starting alphanumeric.

    The code is the SFTP user name, a folder name on the node and an X.509 printable string,
    so nothing else is allowed (no dots, slashes or spaces: path traversal starts there).
    """
    if not _CODE_RE.fullmatch(text):
        raise InputError(
            f"invalid department code {text!r}: use 1-32 letters, digits, '_' or '-', "
            "starting with a letter or digit",
            code="E_DEPT_CODE",
        )
    return DeptCode(text)


def parse_networks(values: Iterable[str]) -> list[IPNetwork]:
    """Parse registered addresses (``10.1.2.3``) and networks (``10.1.0.0/16``), strictly.

    A network with host bits set (``10.1.2.3/16``) is refused rather than silently widened or
    narrowed: a typo in an IP registration must not admit the wrong machines.
    Duplicates are dropped; order is kept.
    """
    out: list[IPNetwork] = []
    for raw in values:
        text = raw.strip()
        if "%" in text:
            # ipaddress accepts IPv6 zones ("fe80::1%eth0"); a zone names an interface of the
            # machine typing the command and means nothing in a certificate.
            raise InputError(
                f"invalid IP address or CIDR {raw!r}: interface zones (%...) cannot be registered",
                code="E_IP",
            )
        try:
            net = ipaddress.ip_network(text, strict=True)
        except ValueError as e:
            hint = ""
            with contextlib.suppress(ValueError):
                hint = f" (did you mean {ipaddress.ip_network(text, strict=False)}?)"
            raise InputError(f"invalid IP address or CIDR {raw!r}: {e}{hint}", code="E_IP") from e
        if net not in out:
            out.append(net)
    return out


def subject_text(name: x509.Name) -> str:
    """``name`` as RFC 4514 text with the department code's attribute spelled
    ``serialNumber`` (cryptography prints its bare OID, ``2.5.4.5``, which no operator reads)."""
    return name.rfc4514_string({NameOID.SERIAL_NUMBER: "serialNumber"})


def serial_hex(serial: int) -> CertSerial:
    """Canonical text form of a certificate serial: upper-case hex, as OpenSSL prints it."""
    return CertSerial(format(serial, "X"))


# --- DER for SEQUENCE OF IA5String, the only structure the private extension needs -----------


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def encode_networks(networks: Sequence[IPNetwork]) -> bytes:
    """DER ``SEQUENCE OF IA5String`` of the networks in CIDR notation."""
    items = b""
    for net in networks:
        text = str(net).encode("ascii")
        items += b"\x16" + _der_len(len(text)) + text
    return b"\x30" + _der_len(len(items)) + items


def _read_tlv(data: bytes, pos: int) -> tuple[int, bytes, int]:
    if pos + 2 > len(data):
        raise ValueError("truncated DER")
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4 or pos + n > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    end = pos + length
    if end > len(data):
        raise ValueError("truncated DER")
    return tag, data[pos:end], end


def decode_networks(der: bytes) -> list[IPNetwork]:
    """Inverse of :func:`encode_networks`; raises ``ValueError`` on any malformed input."""
    tag, body, end = _read_tlv(der, 0)
    if tag != 0x30 or end != len(der):
        raise ValueError("registered networks: expected one SEQUENCE")
    out: list[IPNetwork] = []
    pos = 0
    while pos < len(body):
        tag, value, pos = _read_tlv(body, pos)
        if tag != 0x16:
            raise ValueError("registered networks: expected IA5String")
        out.append(ipaddress.ip_network(value.decode("ascii"), strict=True))
    return out


@dataclass(frozen=True)
class CertifiedIdentity:
    """The identity a verified certificate vouches for. Built only from a checked chain."""

    code: DeptCode
    name: str
    role: Role
    networks: tuple[IPNetwork, ...]
    serial: CertSerial
    fingerprint: str
    not_before: dt.datetime
    not_after: dt.datetime
    chain: tuple[x509.Certificate, ...] = field(repr=False, compare=False)

    def allows_address(self, address: str) -> bool:
        """True when ``address`` lies in one of the registered networks (部省 第五条), by the
        one address rule of the product (:func:`exchange_common.net.in_networks`)."""
        return in_networks(address, self.networks)


def _one_attr(name: x509.Name, oid: ObjectIdentifier) -> str | None:
    attrs = name.get_attributes_for_oid(oid)
    if len(attrs) != 1:
        return None
    value = attrs[0].value
    return value if isinstance(value, str) else None


def identity_from_certificate(cert: x509.Certificate, fingerprint: str) -> CertifiedIdentity:
    """Read the holder's identity from ``cert``; raises ``E_IDENTITY`` if the profile is broken.

    This does not verify anything: call it on a certificate whose chain has been checked.
    """
    code = _one_attr(cert.subject, NameOID.SERIAL_NUMBER)
    name = _one_attr(cert.subject, NameOID.COMMON_NAME)
    role_text = _one_attr(cert.subject, NameOID.ORGANIZATIONAL_UNIT_NAME)
    if code is None or name is None or role_text not in {r.value for r in Role}:
        raise CertificateError(
            "certificate does not carry an exchange identity",
            code="E_IDENTITY",
            detail=f"subject {subject_text(cert.subject)} lacks serialNumber/CN/OU role",
        )
    try:
        dept = parse_dept_code(code)
    except InputError as e:
        raise CertificateError(
            "certificate carries an invalid department code", code="E_IDENTITY", detail=str(e)
        ) from e
    networks: list[IPNetwork] = []
    try:
        ext = cert.extensions.get_extension_for_oid(OID_REGISTERED_NETWORKS)
    except x509.ExtensionNotFound:
        pass
    else:
        value = ext.value
        if not isinstance(value, x509.UnrecognizedExtension):
            raise CertificateError("malformed registered-networks extension", code="E_IDENTITY")
        try:
            networks = decode_networks(value.value)
        except ValueError as e:
            raise CertificateError(
                "malformed registered-networks extension", code="E_IDENTITY", detail=str(e)
            ) from e
    return CertifiedIdentity(
        code=dept,
        name=name,
        role=Role(role_text),
        networks=tuple(networks),
        serial=serial_hex(cert.serial_number),
        fingerprint=fingerprint,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        chain=(cert,),
    )
