"""Bundle format v1: constants, the error class, canonical JSON and the field checks.

Pure functions over bytes and values; no I/O. Everything a peer supplies is parsed strictly
(canonical JSON only, exact key sets, exact types) and every failure becomes a
:class:`BundleError` with a stable code. The header and manifest codecs built on these live in
:mod:`pki._bundle_header` and :mod:`pki._bundle_manifest`. See docs/bundle-format.md for the
byte layout.
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
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, NewType

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from exchange_common.errors import PeerError
from exchange_common.timefmt import RFC3339_UTC, rfc3339

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
    "BundleId",
    "BundleKind",
    "canonical_json",
    "check_media_type",
    "check_member_name",
    "content_context",
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
    NOTICE = "notice"  # the node tells a party about a deadline: overdue, extended, terminated
    SUPPLEMENT = "supplement"  # missing authorization references for a suspended query
    PROBE = "probe"  # a department's selftest round trip (部省 第六条): a receipt, nothing else
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


def _parse_time(value: object, what: str) -> dt.datetime:
    if not isinstance(value, str) or not _TIME_RE.fullmatch(value):
        raise reject("E_FORMAT", f"header {what} is not an RFC 3339 UTC time")
    try:
        when = dt.datetime.strptime(value, RFC3339_UTC).replace(tzinfo=dt.UTC)
    except ValueError:
        raise reject("E_FORMAT", f"header {what} is not a valid date and time") from None
    if rfc3339(when) != value:
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
