"""Signed checkpoints of the audit log: C2SP ``tlog-checkpoint`` bodies in C2SP ``signed-note``s.

A checkpoint commits the node to the first ``size`` events of its audit trail by their RFC 9162
Merkle root. Its text is::

    <origin>
    <tree size, decimal>
    <root hash, base64>

    — <key name> base64(4-byte key id || signature)

signed by the node's certificate key over the body (the three lines with their newlines):

- EC P-256 keys: signature type ``0x02`` (ECDSA, as in transparency-dev/witness), a DER
  ECDSA-SHA256 signature; key id = SHA-256(name || 0x0A || 0x02 || DER SubjectPublicKeyInfo)[:4].
- RSA keys (no type byte is assigned by the spec): type ``0xFF`` followed by the identifier
  ``rsa-pss-sha256``; an RSA-PSS-SHA256 signature (32-byte salt, as bundles use);
  key id = SHA-256(name || 0x0A || 0xFF || "rsa-pss-sha256" || DER SPKI)[:4].

:func:`open_checkpoint` follows the spec's verifier rules: signatures by unknown keys are
ignored, one by the expected key must verify, a note without one is refused. It raises
:class:`~exchange_common.errors.PeerError` ``E_CHECKPOINT`` for anything wrong, with the reason.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from exchange_common.errors import PeerError
from pki._bundle_crypto import digest_signature_ok, sign_digest
from pki.keys import PrivateKey, PublicKey

__all__ = ["Checkpoint", "key_id", "note_key_name", "open_checkpoint", "sign_checkpoint"]

_EM_DASH = "\u2014"
_RSA_TYPE = b"\xff" + b"rsa-pss-sha256"
#: A note longer than this is refused before parsing (a checkpoint is well under 1 KiB).
MAX_NOTE_BYTES = 64 * 1024


def _bad(why: str) -> PeerError:
    return PeerError(f"checkpoint refused: {why}", code="E_CHECKPOINT")


@dataclass(frozen=True)
class Checkpoint:
    """The log ``origin`` committed to its first ``size`` entries by Merkle ``root``."""

    origin: str
    size: int
    root: bytes

    def body(self) -> str:
        """The note text: origin, size and base64 root, each ending in a newline."""
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"


def _type_prefix(key: PublicKey) -> bytes:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return b"\x02"
    return _RSA_TYPE


def key_id(name: str, key: PublicKey) -> bytes:
    """The 4-byte signed-note key id of ``key`` under ``name`` (see the module docstring)."""
    spki = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(name.encode() + b"\n" + _type_prefix(key) + spki).digest()[:4]


def note_key_name(origin: str) -> str:
    """The key name the node signs with: the origin itself (a schema-less URL-like name)."""
    return origin


def _check_name(name: str) -> None:
    if not name or any(c.isspace() or c == "+" for c in name):
        raise ValueError(f"key name {name!r} is empty or holds a space or '+'")


def sign_checkpoint(checkpoint: Checkpoint, key: PrivateKey) -> str:
    """The signed note of ``checkpoint`` (origin as key name); ``ValueError`` for an origin
    that is not one line of printable text."""
    name = note_key_name(checkpoint.origin)
    _check_name(name)
    sig = sign_digest(key, hashlib.sha256(checkpoint.body().encode()).digest())
    blob = base64.b64encode(key_id(name, key.public_key()) + sig).decode()
    return f"{checkpoint.body()}\n{_EM_DASH} {name} {blob}\n"


def _parse_body(body: str) -> Checkpoint:
    lines = body.split("\n")
    if len(lines) < 4 or lines[-1] != "":
        raise _bad("the body is not origin, size and root hash, one per line")
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    if not origin:
        raise _bad("the origin line is empty")
    if not size_text.isdigit() or not size_text.isascii() or len(size_text) > 20:
        raise _bad("the tree size is not a decimal number")
    if size_text != str(int(size_text)):
        raise _bad("the tree size has leading zeros")
    try:
        root = base64.b64decode(root_text, validate=True)
    except binascii.Error:
        raise _bad("the root hash is not base64") from None
    if len(root) != 32:
        raise _bad(f"the root hash has {len(root)} bytes, not 32")
    return Checkpoint(origin, int(size_text), root)


def open_checkpoint(note: str | bytes, key: PublicKey, *, origin: str | None = None) -> Checkpoint:
    """Verify ``note`` with ``key`` and return its checkpoint.

    ``origin``, when given, must be the checkpoint's. Raises ``PeerError`` ``E_CHECKPOINT``
    naming the first problem: not UTF-8 or too long, control characters, no blank line before
    the signatures, a malformed signature line, no signature by ``key``, a signature by ``key``
    that does not verify, or a malformed body.
    """
    if isinstance(note, bytes):
        if len(note) > MAX_NOTE_BYTES:
            raise _bad(f"the note is longer than {MAX_NOTE_BYTES} bytes")
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError:
            raise _bad("the note is not UTF-8") from None
    if len(note.encode()) > MAX_NOTE_BYTES:
        raise _bad(f"the note is longer than {MAX_NOTE_BYTES} bytes")
    if any(ord(c) < 0x20 and c != "\n" for c in note):
        raise _bad("the note holds control characters")
    body, sep, sigs = note.rpartition("\n\n")
    if not sep or not sigs.endswith("\n"):
        raise _bad("no blank line separates the text from its signatures")
    body += "\n"
    wanted_name = note_key_name(origin) if origin is not None else None
    verified = False
    for line in sigs[:-1].split("\n"):
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != _EM_DASH:
            raise _bad("a signature line is not '— <name> <base64>'")
        name, blob_text = parts[1], parts[2]
        try:
            blob = base64.b64decode(blob_text, validate=True)
        except binascii.Error:
            raise _bad("a signature is not base64") from None
        if len(blob) < 5:
            raise _bad("a signature is too short")
        if wanted_name is not None and name != wanted_name:
            continue
        if blob[:4] != key_id(name, key):
            continue  # another key's signature: ignored, as the spec says
        if not digest_signature_ok(key, blob[4:], hashlib.sha256(body.encode()).digest()):
            raise _bad(f"the signature by {name} does not verify")
        verified = True
    if not verified:
        raise _bad("it carries no signature by the node's key")
    checkpoint = _parse_body(body)
    if origin is not None and checkpoint.origin != origin:
        raise _bad(f"its origin is {checkpoint.origin!r}, not {origin!r}")
    return checkpoint
