"""Bundle format v1: the encrypted manifest codec (:class:`Manifest`, :func:`parse_manifest`).

Pure functions over bytes; no I/O. The manifest is parsed as strictly as the header (canonical
JSON, exact keys, safe member names, unique names, well-formed digests and media types) and every
failure becomes a :class:`~pki._bundle_format.BundleError` with a stable code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from exchange_common.limits import Limits
from pki._bundle_format import (
    _HEX64_RE,
    BundleError,
    _strict_json,
    canonical_json,
    check_media_type,
    check_member_name,
    name_key,
    reject,
)

__all__ = [
    "Manifest",
    "ManifestMember",
    "parse_manifest",
]


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
