"""Generator of good and deliberately bad bundles for the bundle tests.

Nothing here is committed output: parties (certificates, keys) come from the throw-away CA
fixtures in tests/conftest.py and bundles are built in memory. The tampering helpers work on
the documented byte layout (docs/bundle-format.md) and re-implement only what an attacker
could: cut, swap, flip and re-assemble bytes, and sign with a key the attacker holds.

:func:`craft` builds a bundle from a raw inner stream, so tests can play a *malicious sender*
(a lying manifest, hostile member names) with a valid signature and encryption.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import os
import struct
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.cobblestone import Cobblestone128Encryptor
from cryptography.hazmat.primitives import serialization

from exchange_common.limits import DEFAULT_LIMITS
from pki._bundle_crypto import sign_digest, signature_alg_for, unwrap_key, wrap_key
from pki._bundle_format import (
    CONTENT_COBBLESTONE_128,
    FOOTER_MAGIC,
    INNER_MAGIC,
    MAGIC,
    BundleId,
    BundleKind,
    canonical_json,
    content_context,
)
from pki._bundle_header import BundleHeader, parse_header
from pki.bundle import Member, seal
from pki.ca import IssuedCertificate
from pki.keys import KeyType, PrivateKey, fingerprint
from pki.verify import TrustStore
from tests.conftest import CAFixture

#: Cobblestone-128: 56-byte stream prefix, then chunks of 16 KiB plaintext + 16-byte tag.
STREAM_PREFIX = 56
CHUNK = 16 * 1024
SEALED_CHUNK = CHUNK + 16


@dataclass
class Parties:
    """A sender, recipients and an outsider under one CA, plus the trust store at ``now``."""

    ca: CAFixture
    now: dt.datetime
    sender: IssuedCertificate
    recipient: IssuedCertificate
    outsider: IssuedCertificate
    trust: TrustStore
    rsa_recipient: IssuedCertificate | None = None

    def key(self, who: IssuedCertificate) -> PrivateKey:
        assert who.key is not None
        return who.key


def make_parties(ca: CAFixture, *, rsa: bool = False) -> Parties:
    """Issue a sender (MZ), a recipient (NODE-like department RS) and an outsider (GA)."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    sender = ca.issue("MZ330100", "杭州市民政局")
    recipient = ca.issue("RS330100", "杭州市人社局")
    outsider = ca.issue("GA330100", "杭州市公安局")
    rsa_recipient = ca.issue("ZJ330100", "杭州市住建局", key_type=KeyType.RSA) if rsa else None
    return Parties(ca, now, sender, recipient, outsider, ca.trust(now), rsa_recipient)


def seal_bytes(
    parties: Parties,
    members: Sequence[tuple[str, bytes]],
    *,
    recipients: Sequence[IssuedCertificate] | None = None,
    sender: IssuedCertificate | None = None,
    now: dt.datetime | None = None,
    **kw: Any,
) -> bytes:
    """Seal in-memory members and return the bundle bytes."""
    sender = sender or parties.sender
    assert sender.key is not None
    out = io.BytesIO()
    seal(
        [Member(name, io.BytesIO(data), size=len(data)) for name, data in members],
        out,
        signer_key=sender.key,
        signer_chain=sender.chain,
        recipients=[r.certificate for r in (recipients or [parties.recipient])],
        kind=kw.pop("kind", BundleKind.DATA),
        now=now or parties.now,
        **kw,
    )
    return out.getvalue()


@dataclass(frozen=True)
class Layout:
    """Byte offsets of a bundle's parts (see docs/bundle-format.md)."""

    header_len: int
    sig_len: int
    chain_len: int
    total: int

    @property
    def header_start(self) -> int:
        return 12

    @property
    def ct_start(self) -> int:
        return 12 + self.header_len

    @property
    def signed_length(self) -> int:
        return self.total - 16 - self.sig_len - self.chain_len

    @property
    def sig_start(self) -> int:
        return self.signed_length

    @property
    def chain_start(self) -> int:
        return self.signed_length + self.sig_len

    @property
    def footer_start(self) -> int:
        return self.total - 16

    def chunk_boundaries(self) -> list[int]:
        """File offsets where a Cobblestone chunk starts (after the prefix), and the end."""
        out = []
        pos = self.ct_start + STREAM_PREFIX
        while pos < self.signed_length:
            out.append(pos)
            pos += SEALED_CHUNK
        return out


def layout(data: bytes) -> Layout:
    """Parse the outer layout of a well-formed bundle."""
    assert data[:8] == MAGIC and data[-8:] == FOOTER_MAGIC
    (h,) = struct.unpack(">I", data[8:12])
    s, k = struct.unpack(">II", data[-16:-8])
    return Layout(h, s, k, len(data))


@dataclass(frozen=True)
class Parts:
    """A bundle cut into its pieces."""

    header: bytes
    ciphertext: bytes
    signature: bytes
    chain: bytes

    @classmethod
    def of(cls, data: bytes) -> Parts:
        lay = layout(data)
        return cls(
            data[12 : lay.ct_start],
            data[lay.ct_start : lay.signed_length],
            data[lay.sig_start : lay.chain_start],
            data[lay.chain_start : lay.footer_start],
        )

    def header_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = json.loads(self.header)
        return obj

    def signed_region(self) -> bytes:
        return MAGIC + struct.pack(">I", len(self.header)) + self.header + self.ciphertext

    def assemble(self) -> bytes:
        return (
            self.signed_region()
            + self.signature
            + self.chain
            + struct.pack(">II", len(self.signature), len(self.chain))
            + FOOTER_MAGIC
        )

    def resign(self, key: PrivateKey, chain: Sequence[x509.Certificate] | None = None) -> bytes:
        """Re-assemble signed with ``key`` (and, if given, put ``chain`` in header + footer)."""
        header = self.header
        chain_der = self.chain
        if chain is not None:
            obj = self.header_json()
            ders = [c.public_bytes(serialization.Encoding.DER) for c in chain]
            obj["sender_chain"] = [base64.b64encode(d).decode() for d in ders]
            obj["signature_alg"] = signature_alg_for(key)
            header = canonical_json(obj)
            chain_der = b"".join(ders)
        parts = Parts(header, self.ciphertext, b"", chain_der)
        digest = hashlib.sha256(parts.signed_region()).digest()
        return Parts(header, self.ciphertext, sign_digest(key, digest), chain_der).assemble()


def with_header(
    data: bytes, edit: Callable[[dict[str, Any]], None], *, key: PrivateKey | None = None
) -> bytes:
    """Edit the header JSON; keep the old signature unless ``key`` re-signs."""
    parts = Parts.of(data)
    obj = parts.header_json()
    edit(obj)
    new = Parts(canonical_json(obj), parts.ciphertext, parts.signature, parts.chain)
    return new.resign(key) if key is not None else new.assemble()


def with_raw_header(data: bytes, header: bytes, *, key: PrivateKey | None = None) -> bytes:
    """Replace the header bytes verbatim (non-canonical JSON and the like)."""
    parts = Parts.of(data)
    new = Parts(header, parts.ciphertext, parts.signature, parts.chain)
    return new.resign(key) if key is not None else new.assemble()


def flip(data: bytes, pos: int, mask: int = 0x01) -> bytes:
    """``data`` with the byte at ``pos`` XORed with ``mask``."""
    out = bytearray(data)
    out[pos] ^= mask
    return bytes(out)


def content_key_of(data: bytes, who: IssuedCertificate) -> bytes:
    """What an insider (a legitimate recipient) learns: the bundle's content key."""
    header = parse_header(Parts.of(data).header, DEFAULT_LIMITS)
    assert who.key is not None
    entry = header.recipient(_fp(who.certificate))
    assert entry is not None
    return unwrap_key(entry, who.key, who.certificate, header.bundle_id)


def _fp(cert: x509.Certificate) -> str:
    return fingerprint(cert)


def inner_stream(
    members: Sequence[tuple[bytes, int | None]],
    manifest: dict[str, Any] | bytes,
    count: int | None = None,
) -> bytes:
    """A raw inner stream: members as (data, declared size or None) and a manifest."""
    out = bytearray(INNER_MAGIC + struct.pack(">I", len(members) if count is None else count))
    for data, size in members:
        out += struct.pack(">Q", len(data) if size is None else size) + data
    body = manifest if isinstance(manifest, bytes) else canonical_json(manifest)
    out += struct.pack(">I", len(body)) + body
    return bytes(out)


def manifest_for(
    members: Sequence[tuple[str, bytes]],
    fields: dict[str, Any] | None = None,
    media_type: str = "application/octet-stream",
) -> dict[str, Any]:
    """The honest manifest of ``members`` (tests then make it lie)."""
    return {
        "members": [
            {
                "name": name,
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "media_type": media_type,
                "records": None,
            }
            for name, data in members
        ],
        "fields": fields or {},
    }


def craft(
    parties: Parties,
    inner: bytes,
    *,
    sender: IssuedCertificate | None = None,
    recipients: Sequence[IssuedCertificate] | None = None,
    header_edit: Callable[[dict[str, Any]], None] | None = None,
    created_at: dt.datetime | None = None,
    ttl: dt.timedelta = dt.timedelta(days=30),
) -> bytes:
    """A validly signed and encrypted bundle around an arbitrary inner stream (malicious sender)."""
    sender = sender or parties.sender
    assert sender.key is not None
    bid = BundleId(uuid.uuid4())
    content_key = os.urandom(16)
    created = (created_at or parties.now).replace(microsecond=0)
    header = BundleHeader(
        bundle_id=bid,
        kind=BundleKind.DATA,
        created_at=created,
        expires_at=created + ttl,
        sender_chain=tuple(c.public_bytes(serialization.Encoding.DER) for c in sender.chain),
        signature_alg=signature_alg_for(sender.key),
        content_alg=CONTENT_COBBLESTONE_128,
        recipients=tuple(
            wrap_key(r.certificate, content_key, bid, os.urandom)
            for r in (recipients or [parties.recipient])
        ),
    )
    header_bytes = header.encode()
    if header_edit is not None:
        obj = json.loads(header_bytes)
        header_edit(obj)
        header_bytes = canonical_json(obj)
    enc = Cobblestone128Encryptor(content_key, content_context(header_bytes))
    ciphertext = enc.update(inner) + enc.finalize()
    return Parts(header_bytes, ciphertext, b"", header.chain_der).resign(sender.key)


def write(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` and return the path."""
    path.write_bytes(data)
    return path
