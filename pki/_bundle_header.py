"""Bundle format v1: the header codec (:class:`BundleHeader`, :func:`parse_header`).

Pure functions over bytes; no I/O. The header a peer supplies is parsed strictly (canonical JSON,
exact key set, exact types, known algorithms, certificates that parse) and every failure becomes
a :class:`~pki._bundle_format.BundleError` with a stable code.
"""

from __future__ import annotations

import datetime as dt
import uuid
import warnings
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning

from exchange_common.limits import Limits
from exchange_common.timefmt import rfc3339
from pki._bundle_format import (
    _HEX64_RE,
    CERTIFICATE_PARSE_ERRORS,
    CONTENT_ALGORITHMS,
    EPK_LEN,
    FORMAT_NAME,
    FORMAT_VERSION,
    KEY_ALGORITHMS,
    KEY_ECDH_P256,
    MAX_SIGNATURE_SIZE,
    SIGNATURE_ALGORITHMS,
    WRAPPED_KEY_LEN_AESKW,
    BundleId,
    BundleKind,
    _b64,
    _parse_time,
    _strict_json,
    b64,
    canonical_json,
    reject,
)

__all__ = [
    "BundleHeader",
    "RecipientEntry",
    "parse_header",
]


@dataclass(frozen=True)
class RecipientEntry:
    """One recipient: certificate fingerprint and the content key wrapped for it."""

    fingerprint: str
    key_alg: str
    wrapped_key: bytes
    #: Ephemeral public key (uncompressed X9.62), ECDH recipients only.
    epk: bytes | None = None

    def to_json(self) -> dict[str, str]:
        """The entry as it appears in the header."""
        out = {
            "fingerprint": self.fingerprint,
            "key_alg": self.key_alg,
            "wrapped_key": b64(self.wrapped_key),
        }
        if self.epk is not None:
            out["epk"] = b64(self.epk)
        return out


_HEADER_KEYS = frozenset(
    {
        "bundle_id",
        "content_alg",
        "created_at",
        "expires_at",
        "format",
        "kind",
        "recipients",
        "sender_chain",
        "signature_alg",
        "version",
    }
)


@dataclass(frozen=True)
class BundleHeader:
    """The cleartext header: who sent the bundle, to whom, what kind, valid when."""

    bundle_id: BundleId
    kind: BundleKind
    created_at: dt.datetime
    expires_at: dt.datetime
    #: DER of the sender's certificates, leaf first.
    sender_chain: tuple[bytes, ...]
    signature_alg: str
    content_alg: str
    recipients: tuple[RecipientEntry, ...]
    version: int = FORMAT_VERSION
    certificates: tuple[x509.Certificate, ...] = field(default=(), repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """The header as a JSON object (before canonical serialisation)."""
        return {
            "format": FORMAT_NAME,
            "version": self.version,
            "bundle_id": str(self.bundle_id),
            "kind": self.kind.value,
            "created_at": rfc3339(self.created_at),
            "expires_at": rfc3339(self.expires_at),
            "sender_chain": [b64(c) for c in self.sender_chain],
            "signature_alg": self.signature_alg,
            "content_alg": self.content_alg,
            "recipients": [r.to_json() for r in self.recipients],
        }

    def encode(self) -> bytes:
        """Canonical JSON bytes of the header."""
        return canonical_json(self.to_json())

    @property
    def chain_der(self) -> bytes:
        """The sender chain as stored in the footer: DER certificates concatenated."""
        return b"".join(self.sender_chain)

    def recipient(self, fingerprint: str) -> RecipientEntry | None:
        """The entry for the certificate with this SHA-256 fingerprint, if any."""
        for entry in self.recipients:
            if entry.fingerprint == fingerprint:
                return entry
        return None


def _expect(value: object, kind: type, what: str) -> None:
    if not isinstance(value, kind):
        raise reject("E_FORMAT", f"{what} has the wrong type")


def _parse_recipient(item: object, index: int) -> RecipientEntry:
    what = f"recipient {index}"
    if not isinstance(item, dict):
        raise reject("E_FORMAT", f"{what} is not an object")
    key_alg = item.get("key_alg")
    if not isinstance(key_alg, str):
        raise reject("E_FORMAT", f"{what} has no key_alg")
    if key_alg not in KEY_ALGORITHMS:
        raise reject("E_ALGORITHM", f"{what}: unknown key_alg {key_alg[:64]!r}")
    expected = {"fingerprint", "key_alg", "wrapped_key"}
    if key_alg == KEY_ECDH_P256:
        expected.add("epk")
    if set(item) != expected:
        raise reject("E_FORMAT", f"{what}: fields {sorted(item)} != {sorted(expected)}")
    fp = item["fingerprint"]
    if not isinstance(fp, str) or not _HEX64_RE.fullmatch(fp):
        raise reject("E_FORMAT", f"{what}: fingerprint is not 64 lower-case hex digits")
    wrapped = _b64(item["wrapped_key"], f"{what} wrapped_key")
    epk: bytes | None = None
    if key_alg == KEY_ECDH_P256:
        epk = _b64(item["epk"], f"{what} epk")
        if len(epk) != EPK_LEN or epk[0] != 4:
            raise reject("E_FORMAT", f"{what}: epk is not an uncompressed P-256 point")
        if len(wrapped) != WRAPPED_KEY_LEN_AESKW:
            raise reject("E_FORMAT", f"{what}: wrapped key has {len(wrapped)} bytes, not 24")
    elif not 256 <= len(wrapped) <= MAX_SIGNATURE_SIZE:
        raise reject("E_FORMAT", f"{what}: RSA wrapped key has {len(wrapped)} bytes")
    return RecipientEntry(fingerprint=fp, key_alg=key_alg, wrapped_key=wrapped, epk=epk)


def parse_header(data: bytes, limits: Limits) -> BundleHeader:
    """Parse and check a header strictly; raise :class:`BundleError` on anything else.

    Checks, in order: size, canonical JSON object, ``format``, ``version`` (anything but 1 is
    ``E_VERSION``: a reader never guesses at a newer or older layout), the exact key set,
    every field's type and form, algorithm names (unknown ones are ``E_ALGORITHM``), limits on
    the chain and recipients, and that the certificates parse. It does *not* verify the chain,
    the signature or the times against a clock: :func:`pki.bundle.verify` does.
    """
    if len(data) > limits.max_header_size:
        raise reject("E_LIMIT", f"header has {len(data)} bytes > {limits.max_header_size}")
    obj = _strict_json(data, "header")
    if obj.get("format") != FORMAT_NAME:
        raise reject("E_FORMAT", "header format is not sa-exchange-bundle")
    version = obj.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise reject("E_FORMAT", "header version is not an integer")
    if version != FORMAT_VERSION:
        raise reject("E_VERSION", f"header claims format version {version}; this reader knows 1")
    if set(obj) != _HEADER_KEYS:
        extra = sorted(set(obj) - _HEADER_KEYS)[:5]
        missing = sorted(_HEADER_KEYS - set(obj))
        raise reject("E_FORMAT", f"header fields: unknown {extra}, missing {missing}")

    raw_id = obj["bundle_id"]
    try:
        if not isinstance(raw_id, str):
            raise ValueError
        bundle_id = uuid.UUID(raw_id)
    except ValueError:
        raise reject("E_FORMAT", "header bundle_id is not a UUID") from None
    if str(bundle_id) != raw_id:
        raise reject("E_FORMAT", "header bundle_id is not in canonical lower-case form")

    raw_kind = obj["kind"]
    if not isinstance(raw_kind, str) or raw_kind not in BundleKind.__members__.values():
        raise reject("E_FORMAT", f"header kind {str(raw_kind)[:32]!r} is unknown")
    kind = BundleKind(raw_kind)

    created_at = _parse_time(obj["created_at"], "created_at")
    expires_at = _parse_time(obj["expires_at"], "expires_at")
    if expires_at <= created_at:
        raise reject("E_FORMAT", "header expires_at is not after created_at")

    signature_alg = obj["signature_alg"]
    _expect(signature_alg, str, "header signature_alg")
    if signature_alg not in SIGNATURE_ALGORITHMS:
        raise reject("E_ALGORITHM", f"unknown signature_alg {str(signature_alg)[:64]!r}")
    content_alg = obj["content_alg"]
    _expect(content_alg, str, "header content_alg")
    if content_alg not in CONTENT_ALGORITHMS:
        raise reject("E_ALGORITHM", f"unknown content_alg {str(content_alg)[:64]!r}")

    chain_raw = obj["sender_chain"]
    _expect(chain_raw, list, "header sender_chain")
    if not 1 <= len(chain_raw) <= limits.max_chain_length:
        raise reject(
            "E_LIMIT" if chain_raw else "E_FORMAT",
            f"sender_chain has {len(chain_raw)} certificates (1..{limits.max_chain_length})",
        )
    chain = tuple(_b64(c, f"sender_chain[{i}]") for i, c in enumerate(chain_raw))
    certs: list[x509.Certificate] = []
    for i, der in enumerate(chain):
        try:
            cert = x509.load_der_x509_certificate(der)
            # cryptography parses these lazily; touch them now so that a malformed
            # certificate is a format error here, not a surprise deep in chain building.
            _ = (cert.subject, cert.issuer, cert.extensions, cert.not_valid_after_utc)
            cert.public_key()
            with warnings.catch_warnings():
                # cryptography warns (and will one day refuse) non-positive serials.
                warnings.simplefilter("ignore", CryptographyDeprecationWarning)
                if cert.serial_number <= 0:
                    raise ValueError("serial number is not positive (RFC 5280)")
        except CERTIFICATE_PARSE_ERRORS as e:
            raise reject(
                "E_FORMAT", f"sender_chain[{i}] is not a usable DER certificate: {e}"
            ) from None
        certs.append(cert)

    recipients_raw = obj["recipients"]
    _expect(recipients_raw, list, "header recipients")
    if not recipients_raw:
        raise reject("E_FORMAT", "header lists no recipients")
    if len(recipients_raw) > limits.max_recipients:
        raise reject("E_LIMIT", f"{len(recipients_raw)} recipients > {limits.max_recipients}")
    recipients = tuple(_parse_recipient(r, i) for i, r in enumerate(recipients_raw))
    if len({r.fingerprint for r in recipients}) != len(recipients):
        raise reject("E_FORMAT", "a recipient is listed twice")

    return BundleHeader(
        bundle_id=BundleId(bundle_id),
        kind=kind,
        created_at=created_at,
        expires_at=expires_at,
        sender_chain=chain,
        signature_alg=signature_alg,
        content_alg=content_alg,
        recipients=recipients,
        version=version,
        certificates=tuple(certs),
    )
