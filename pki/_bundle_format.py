"""Bundle format v1: constants, the error class, and the strict header and manifest codecs.

Pure functions over bytes and values; no I/O. Everything a peer supplies is parsed strictly
(canonical JSON only, exact key sets, exact types) and every failure becomes a
:class:`BundleError` with a stable code. See docs/bundle-format.md for the byte layout.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import re
import unicodedata
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NewType

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.utils import CryptographyDeprecationWarning

from exchange_common.errors import PeerError
from exchange_common.limits import Limits

__all__ = [
    "CERTIFICATE_PARSE_ERRORS",
    "CONTENT_ALGORITHMS",
    "CONTENT_COBBLESTONE_128",
    "FOOTER_LEN",
    "FOOTER_MAGIC",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "INNER_MAGIC",
    "KEY_ALGORITHMS",
    "KEY_ECDH_P256",
    "KEY_RSA_OAEP",
    "MAGIC",
    "MAGIC_PREFIX",
    "MAX_SIGNATURE_SIZE",
    "PREFIX_LEN",
    "SIGNATURE_ALGORITHMS",
    "SIG_ECDSA_P256",
    "SIG_RSA_PSS",
    "BundleError",
    "BundleHeader",
    "BundleId",
    "BundleKind",
    "Manifest",
    "ManifestMember",
    "RecipientEntry",
    "canonical_json",
    "check_media_type",
    "check_member_name",
    "content_context",
    "format_time",
    "parse_header",
    "parse_manifest",
    "reject",
]

log = logging.getLogger("pki.bundle")
# A library does not decide where log records go; the node and the CLIs configure handlers.
log.addHandler(logging.NullHandler())

# --- layout constants ----------------------------------------------------------------------

#: The first 7 bytes of every bundle; the 8th is the format version as an ASCII digit.
MAGIC_PREFIX = b"SAXBNDL"
FORMAT_VERSION = 1
MAGIC = MAGIC_PREFIX + str(FORMAT_VERSION).encode("ascii")
#: magic (8) + u32 header length.
PREFIX_LEN = 12
#: The last 8 bytes of every complete bundle.
FOOTER_MAGIC = b"SAXBSIG1"
#: u32 signature length + u32 chain length + footer magic.
FOOTER_LEN = 16
#: Largest signature accepted (RSA-8192); ECDSA P-256 DER signatures are at most 72 bytes.
MAX_SIGNATURE_SIZE = 1024
#: The decrypted content stream starts with these 4 bytes.
INNER_MAGIC = b"SAXI"
FORMAT_NAME = "sa-exchange-bundle"

SIG_ECDSA_P256 = "ecdsa-p256-sha256"
SIG_RSA_PSS = "rsa-pss-sha256"
CONTENT_COBBLESTONE_128 = "cobblestone-128"
KEY_ECDH_P256 = "ecdh-p256-hkdf-sha256-aeskw"
KEY_RSA_OAEP = "rsa-oaep-sha256"

SIGNATURE_ALGORITHMS = frozenset({SIG_ECDSA_P256, SIG_RSA_PSS})
CONTENT_ALGORITHMS = frozenset({CONTENT_COBBLESTONE_128})
KEY_ALGORITHMS = frozenset({KEY_ECDH_P256, KEY_RSA_OAEP})

#: AES key wrap (RFC 3394) of a 16-byte content key.
WRAPPED_KEY_LEN_AESKW = 24
#: An uncompressed X9.62 P-256 point.
EPK_LEN = 65

BundleId = NewType("BundleId", uuid.UUID)

#: What parsing a hostile certificate can raise inside cryptography.
CERTIFICATE_PARSE_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    TypeError,
    UnsupportedAlgorithm,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)


class BundleKind(StrEnum):
    """What a bundle carries. The one place the set of kinds is defined."""

    DATA = "data"  # a department pushes data into the low-income population database
    QUERY = "query"  # 查询申请: application data + the persons file
    RESPONSE = "response"  # a data-source department answers a relayed query
    RECEIPT = "receipt"  # signed acknowledgement (accepted / rejected with a reason code)
    RESULT = "result"  # verification result (whole or a segment)
    REVOCATION = "revocation"  # 撤销 of a pending query
    RECHECK = "recheck"  # 覆核 / 复核 request
    RELAY = "relay"  # the hub forwards a query to a provider
    FILE = "file"  # anything else an operator seals by hand


# --- errors --------------------------------------------------------------------------------

#: The opaque text a peer sees for each code ("bundle rejected: <reason>").
REASONS: dict[str, str] = {
    "E_FORMAT": "malformed bundle",
    "E_VERSION": "unsupported bundle format version",
    "E_ALGORITHM": "unsupported algorithm",
    "E_LIMIT": "bundle exceeds a size limit",
    "E_TRUNCATED": "bundle is truncated",
    "E_SIGNATURE": "signature invalid",
    "E_CHAIN": "sender certificate does not chain to a trusted root",
    "E_EXPIRED": "sender certificate has expired",
    "E_NOT_YET_VALID": "sender certificate is not valid yet",
    "E_REVOKED": "sender certificate has been revoked",
    "E_CRL_MISSING": "no CRL available to check the sender certificate",
    "E_CRL_STALE": "CRL is out of date",
    "E_CRL_INVALID": "CRL signature is invalid",
    "E_KEY_USAGE": "sender certificate is not fit for signing bundles",
    "E_IDENTITY": "sender certificate carries no exchange identity",
    "E_TRUST": "no trusted root configured",
    "E_RECIPIENT": "bundle is not addressed to this recipient",
    "E_DECRYPT": "decryption failed",
    "E_MANIFEST": "contents do not match the manifest",
}


class BundleError(PeerError):
    """A bundle is unacceptable. The one error class a bundle reader ever raises outward.

    ``code`` is stable and safe to send to the peer (``E_SIGNATURE``, ``E_TRUNCATED``, ...);
    the message is deliberately vague (``bundle rejected: signature invalid``); the precise
    cause is in ``detail`` and in the ``pki.bundle`` log, never in the message.
    """

    code = "E_FORMAT"


def reject(code: str, detail: str, *, reason: str | None = None) -> BundleError:
    """Build (and log) the :class:`BundleError` for ``code``; the caller raises it.

    ``detail`` must not contain personal data (names, ID numbers): refer to members by index.
    """
    text = reason or REASONS.get(code, "bundle rejected")
    log.warning("bundle rejected (%s): %s", code, detail)
    return BundleError(f"bundle rejected: {text}", code=code, detail=detail)


# --- canonical JSON ------------------------------------------------------------------------


def canonical_json(obj: Any) -> bytes:
    """The one serialisation of ``obj``: sorted keys, no spaces, UTF-8, no NaN."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def _no_float(text: str) -> Any:
    raise ValueError(f"non-integer number {text[:20]!r}")


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


def _strict_json(data: bytes, what: str) -> dict[str, Any]:
    """Parse canonical JSON (one object) or raise ``E_FORMAT``.

    Canonical means: exactly the bytes :func:`canonical_json` produces for the parsed value, so
    there is one encoding per value and the signed header means one thing to every reader
    (no duplicate keys, no whitespace, no escapes where a raw character is allowed, no floats).
    """
    try:
        text = data.decode("utf-8")
        obj = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_float=_no_float,
            parse_constant=_no_constant,
        )
        again = canonical_json(obj)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeError are ValueErrors
        raise reject("E_FORMAT", f"{what} is not valid JSON: {str(e)[:200]}") from None
    if again != data:
        raise reject("E_FORMAT", f"{what} is not in canonical JSON form")
    if not isinstance(obj, dict):
        raise reject("E_FORMAT", f"{what} is not a JSON object")
    return obj


# --- field helpers -------------------------------------------------------------------------

_TIME_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_HEX64_RE = re.compile(r"[0-9a-f]{64}")
_MEDIA_TYPE_RE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,62}/[a-z0-9][a-z0-9!#$&^_.+-]{0,62}")
_WINDOWS_RESERVED = re.compile(r"(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?", re.IGNORECASE)
_FORBIDDEN_NAME_CHARS = frozenset('/\\<>:"|?*')
#: Unicode categories refused in member names: controls, format characters (bidi overrides
#: that make "txt.exe" look like "exe.txt"), surrogates, private use, unassigned, separators.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
MAX_NAME_BYTES = 255


def format_time(when: dt.datetime) -> str:
    """RFC 3339 UTC with whole seconds: ``2026-11-22T08:00:00Z``."""
    if when.tzinfo is None:
        raise ValueError("time must be timezone-aware")
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: object, what: str) -> dt.datetime:
    if not isinstance(value, str) or not _TIME_RE.fullmatch(value):
        raise reject("E_FORMAT", f"header {what} is not an RFC 3339 UTC time")
    try:
        when = dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        raise reject("E_FORMAT", f"header {what} is not a valid date and time") from None
    if format_time(when) != value:
        raise reject("E_FORMAT", f"header {what} is not canonical")
    return when


def _b64(value: object, what: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise reject("E_FORMAT", f"{what} is not a base64 string")
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except ValueError:
        raise reject("E_FORMAT", f"{what} is not valid base64") from None
    if base64.b64encode(raw).decode("ascii") != value:
        raise reject("E_FORMAT", f"{what} is not canonical base64")
    return raw


def b64(data: bytes) -> str:
    """Standard base64 with padding, the only form the format accepts."""
    return base64.b64encode(data).decode("ascii")


def check_member_name(name: str) -> str:
    """Return the NFC form of a member (file) name, or raise ``ValueError`` saying why not.

    A name is one path component that is safe and portable on Linux and Windows: not empty,
    at most 255 UTF-8 bytes, no ``/ \\ < > : " | ? *``, no control, format (bidi override),
    private-use or unassigned characters, not ``.``/``..``, not hidden (leading dot), no
    trailing dot or space, not a Windows device name. Callers compare names case-insensitively
    (:func:`name_key`) to stay safe on case-insensitive file systems.
    """
    if not isinstance(name, str):
        raise ValueError("name is not a string")
    nfc = unicodedata.normalize("NFC", name)
    if not nfc:
        raise ValueError("name is empty")
    if len(nfc.encode("utf-8", errors="surrogatepass")) > MAX_NAME_BYTES:
        raise ValueError(f"name is longer than {MAX_NAME_BYTES} UTF-8 bytes")
    for ch in nfc:
        if ch in _FORBIDDEN_NAME_CHARS:
            raise ValueError(f"name contains forbidden character {ch!r}")
        if unicodedata.category(ch) in _FORBIDDEN_CATEGORIES:
            raise ValueError(f"name contains control or invisible character U+{ord(ch):04X}")
    if nfc.startswith("."):
        raise ValueError("name starts with '.' (hidden file, '.' or '..')")
    if nfc.endswith((".", " ")):
        raise ValueError("name ends with '.' or a space")
    if _WINDOWS_RESERVED.fullmatch(nfc):
        raise ValueError("name is a reserved device name")
    return nfc


def name_key(name: str) -> str:
    """Key under which two names collide (case-insensitive file systems)."""
    return name.casefold()


def check_media_type(value: str) -> str:
    """Return ``value`` lower-cased if it is a plain ``type/subtype``; else ``ValueError``."""
    lowered = value.strip().lower()
    if not _MEDIA_TYPE_RE.fullmatch(lowered):
        raise ValueError(f"invalid media type {value[:80]!r}: expected type/subtype")
    return lowered


def content_context(header_bytes: bytes) -> bytes:
    """Cobblestone context binding the ciphertext to the exact header bytes."""
    return b"sa-exchange-bundle/1 " + hashlib.sha256(header_bytes).digest()


# --- header --------------------------------------------------------------------------------


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
            "created_at": format_time(self.created_at),
            "expires_at": format_time(self.expires_at),
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


# --- manifest ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestMember:
    """One file in a bundle as the (signed, encrypted) manifest describes it."""

    name: str
    size: int
    #: Lower-case hex SHA-256 of the member's bytes.
    sha256: str
    media_type: str
    #: Number of data records (rows), when the sender counted them.
    records: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The member as it appears in the manifest."""
        return {
            "name": self.name,
            "size": self.size,
            "sha256": self.sha256,
            "media_type": self.media_type,
            "records": self.records,
        }


@dataclass(frozen=True)
class Manifest:
    """The encrypted table of contents: members and kind-specific fields."""

    members: tuple[ManifestMember, ...]
    #: Kind-specific data, e.g. the query application (查询申请) for ``query`` bundles.
    fields: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The manifest as a JSON object (before canonical serialisation)."""
        return {"members": [m.to_json() for m in self.members], "fields": dict(self.fields)}

    def encode(self) -> bytes:
        """Canonical JSON bytes of the manifest."""
        return canonical_json(self.to_json())


_MEMBER_KEYS = frozenset({"name", "size", "sha256", "media_type", "records"})


def _manifest_error(detail: str) -> BundleError:
    return reject("E_MANIFEST", detail)


def parse_manifest(data: bytes, limits: Limits) -> Manifest:
    """Parse the decrypted manifest strictly; raise :class:`BundleError` ``E_MANIFEST``.

    Member names must already be in the safe NFC form :func:`check_member_name` returns and
    be unique (case-insensitively); sizes are within limits.
    """
    if len(data) > limits.max_manifest_size:
        raise reject("E_LIMIT", f"manifest has {len(data)} bytes > {limits.max_manifest_size}")
    try:
        obj = _strict_json(data, "manifest")
    except BundleError as e:
        raise _manifest_error(e.detail or "manifest is not canonical JSON") from None
    if set(obj) != {"members", "fields"}:
        raise _manifest_error(f"manifest fields {sorted(obj)[:5]} != ['fields', 'members']")
    raw_members, fields_obj = obj["members"], obj["fields"]
    if not isinstance(raw_members, list) or not isinstance(fields_obj, dict):
        raise _manifest_error("manifest members/fields have the wrong type")
    if len(raw_members) > limits.max_members:
        raise reject("E_LIMIT", f"manifest lists {len(raw_members)} members")
    members: list[ManifestMember] = []
    seen: set[str] = set()
    for i, item in enumerate(raw_members):
        if not isinstance(item, dict) or set(item) != _MEMBER_KEYS:
            raise _manifest_error(f"manifest member {i} has the wrong fields")
        name, size, digest = item["name"], item["size"], item["sha256"]
        media_type, records = item["media_type"], item["records"]
        if not isinstance(name, str):
            raise _manifest_error(f"member {i} name is not a string")
        try:
            safe = check_member_name(name)
        except ValueError as e:
            raise _manifest_error(f"member {i} has an unsafe name: {e}") from None
        if safe != name:
            raise _manifest_error(f"member {i} name is not in NFC form")
        if name_key(name) in seen:
            raise _manifest_error(f"member {i} repeats an earlier name")
        seen.add(name_key(name))
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise _manifest_error(f"member {i} size is not a non-negative integer")
        if size > limits.max_member_size:
            raise reject("E_LIMIT", f"member {i} size {size} > {limits.max_member_size}")
        if not isinstance(digest, str) or not _HEX64_RE.fullmatch(digest):
            raise _manifest_error(f"member {i} sha256 is not 64 lower-case hex digits")
        if not isinstance(media_type, str):
            raise _manifest_error(f"member {i} media_type is not a string")
        try:
            if check_media_type(media_type) != media_type:
                raise ValueError("not lower-case")
        except ValueError as e:
            raise _manifest_error(f"member {i}: {e}") from None
        if records is not None and (
            not isinstance(records, int) or isinstance(records, bool) or records < 0
        ):
            raise _manifest_error(f"member {i} records is not null or a non-negative integer")
        members.append(ManifestMember(name, size, digest, media_type, records))
    return Manifest(tuple(members), fields_obj)


def check_fields(value: Mapping[str, Any], what: str = "fields") -> dict[str, Any]:
    """Check that kind-specific ``fields`` are plain JSON (no floats); ``ValueError`` if not."""

    def walk(v: Any, path: str, depth: int) -> None:
        if depth > 32:
            raise ValueError(f"{path} is nested too deeply")
        if v is None or isinstance(v, bool | int | str):
            return
        if isinstance(v, float):
            raise ValueError(f"{path} is a floating-point number: use an integer or a string")
        if isinstance(v, list | tuple):
            for i, item in enumerate(v):
                walk(item, f"{path}[{i}]", depth + 1)
            return
        if isinstance(v, Mapping):
            for k, item in v.items():
                if not isinstance(k, str):
                    raise ValueError(f"{path} has a non-string key")
                walk(item, f"{path}.{k}", depth + 1)
            return
        raise ValueError(f"{path} has a {type(v).__name__}, which is not JSON")

    if not isinstance(value, Mapping):
        raise ValueError(f"{what} must be a JSON object")
    walk(value, what, 0)
    parsed: dict[str, Any] = json.loads(canonical_json(dict(value)))
    return parsed
