"""Sealed bundles: sign + encrypt files for named recipients; verify; open (decrypt).

A bundle is one file (format v1, docs/bundle-format.md)::

    "SAXBNDL1" | u32 H | header (canonical JSON, H bytes) | ciphertext (Cobblestone-128)
    | signature | sender chain (DER) | u32 S | u32 K | "SAXBSIG1"

The sender signs everything before the signature, so a relay or auditor checks a bundle with
:func:`verify` and no private key, and a recipient's :func:`open_bundle` verifies before it
decrypts a single byte. Everything streams in bounded blocks: memory stays flat for any size.

Guarantees:

- :func:`seal` never produces a bundle a v1 reader with the same limits would refuse.
- :func:`verify` and :func:`open_bundle` raise only :class:`BundleError` for a bad bundle
  (stable ``code``, opaque message, precise ``detail`` in the ``pki.bundle`` log) and
  :class:`~exchange_common.errors.InputError` for bad local input (missing file, key that does not match
  the certificate, output file already present).
- :func:`open_bundle` writes nothing into the output directory unless every check passed:
  signature, chain and CRL, expiry, recipient, every chunk's authentication, the member count,
  every member's size and SHA-256, and that the file did not change since it was verified.

Time (``now``) and randomness (``rng``) are arguments so tests are deterministic.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import shutil
import struct
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO, TypeAlias

from cryptography import x509
from cryptography.cobblestone import Cobblestone128Decryptor, Cobblestone128Encryptor
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization

from exchange_common.errors import CertificateError, InputError
from exchange_common.fs import atomic_output, fsync_dir
from exchange_common.limits import DEFAULT_LIMITS, Limits
from pki._bundle_crypto import (
    CONTENT_KEY_LEN,
    Rng,
    check_key_pair,
    key_alg_for,
    sign_digest,
    signature_alg_for,
    unwrap_key,
    verify_digest,
    wrap_key,
)
from pki._bundle_format import (
    CERTIFICATE_PARSE_ERRORS,
    CONTENT_COBBLESTONE_128,
    FOOTER_LEN,
    FOOTER_MAGIC,
    FORMAT_VERSION,
    INNER_MAGIC,
    MAGIC,
    MAGIC_PREFIX,
    MAX_SIGNATURE_SIZE,
    PREFIX_LEN,
    REASONS,
    BundleError,
    BundleHeader,
    BundleId,
    BundleKind,
    Manifest,
    ManifestMember,
    check_fields,
    check_media_type,
    check_member_name,
    format_time,
    name_key,
    parse_header,
    parse_manifest,
    reject,
)
from pki._bundle_format import (
    content_context as _content_context,
)
from pki.identity import CertifiedIdentity
from pki.keys import PrivateKey, fingerprint
from pki.verify import TrustStore, verify_certificate

__all__ = [
    "CLOCK_SKEW",
    "DEFAULT_TTL",
    "BundleError",
    "BundleHeader",
    "BundleId",
    "BundleKind",
    "Manifest",
    "ManifestMember",
    "Member",
    "OpenedBundle",
    "SealResult",
    "SignatureParts",
    "VerifiedBundle",
    "ciphertext_size",
    "guess_media_type",
    "open_bundle",
    "parse_header",
    "seal",
    "seal_to_file",
    "signature_parts",
    "verify",
]

#: How far a bundle's created_at may lie in the future (clocks of two departments differ).
CLOCK_SKEW = dt.timedelta(minutes=5)
#: Default validity of a bundle from its creation.
DEFAULT_TTL = dt.timedelta(days=30)

Progress: TypeAlias = Callable[[int], None]
Source: TypeAlias = Path | BinaryIO

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_CHUNK = 16 * 1024  # Cobblestone plaintext chunk
_CHUNK_OVERHEAD = 16  # GCM tag per chunk
_STREAM_OVERHEAD = 56  # Cobblestone fixed prefix

_MEDIA_TYPES = {
    ".csv": "text/csv",
    ".txt": "text/plain",
    ".json": "application/json",
    ".xml": "application/xml",
    ".pdf": "application/pdf",
    ".zip": "application/zip",
    ".parquet": "application/vnd.apache.parquet",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".xls": "application/vnd.ms-excel",
    ".ofd": "application/ofd",
}


def ciphertext_size(plaintext_size: int) -> int:
    """Exact Cobblestone-128 ciphertext size for a plaintext of ``plaintext_size`` bytes."""
    return plaintext_size + _STREAM_OVERHEAD + _CHUNK_OVERHEAD * (plaintext_size // _CHUNK + 1)


#: The smallest ciphertext that can hold the inner framing (magic, count, manifest length).
_MIN_CIPHERTEXT = ciphertext_size(len(INNER_MAGIC) + 4 + 4)


def guess_media_type(name: str) -> str:
    """Media type from the file extension (a fixed table, not the host's mime database)."""
    return _MEDIA_TYPES.get(Path(name).suffix.lower(), "application/octet-stream")


# --- values --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """A file to seal: a path, or a binary stream with its size.

    ``size`` may be omitted for a path (the file's size is used) or a seekable stream (the
    bytes from the current position to the end). Sealing fails if the source then yields a
    different number of bytes. ``media_type`` defaults to a guess from the name's extension.
    """

    name: str
    source: Path | BinaryIO
    size: int | None = None
    media_type: str | None = None
    records: int | None = None


@dataclass(frozen=True)
class SealResult:
    """What :func:`seal` produced."""

    header: BundleHeader
    manifest: Manifest
    #: Bytes covered by the signature (everything before the signature).
    signed_length: int
    #: Length of the whole bundle file.
    length: int
    #: Lower-case hex SHA-256 of the whole bundle file.
    sha256: str

    @property
    def bundle_id(self) -> BundleId:
        """The bundle's UUID."""
        return self.header.bundle_id


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle whose layout, header, signature, sender chain, CRL and times checked out."""

    header: BundleHeader
    #: The sender as their verified certificate says (department code, name, role, chain).
    sender: CertifiedIdentity
    #: Bytes covered by the signature.
    signed_length: int
    #: Length of the whole bundle file.
    length: int
    #: Lower-case hex SHA-256 of the whole bundle file (what receipts and the audit log cite).
    sha256: str
    header_bytes: bytes = field(repr=False)
    signed_digest: bytes = field(repr=False)
    signature: bytes = field(repr=False)

    @property
    def bundle_id(self) -> BundleId:
        """The bundle's UUID."""
        return self.header.bundle_id


@dataclass(frozen=True)
class OpenedBundle:
    """A verified and decrypted bundle whose members now exist in the output directory."""

    verified: VerifiedBundle
    manifest: Manifest
    #: The members' final paths, in manifest order.
    paths: tuple[Path, ...]

    @property
    def header(self) -> BundleHeader:
        """The bundle header."""
        return self.verified.header

    @property
    def sender(self) -> CertifiedIdentity:
        """The verified sender."""
        return self.verified.sender


# --- small I/O helpers ---------------------------------------------------------------------


def _readinto(src: IO[bytes], view: memoryview) -> int:
    """Fill ``view`` as far as the source allows; returns the bytes read (short only at EOF)."""
    readinto = getattr(src, "readinto", None)
    pos = 0
    while pos < len(view):
        if readinto is not None:
            n = readinto(view[pos:])
        else:
            data = src.read(len(view) - pos)
            n = len(data)
            view[pos : pos + n] = data
        if not n:
            break
        pos += n
    return pos


def _read_exact(src: IO[bytes], n: int) -> bytes:
    buf = bytearray(n)
    got = _readinto(src, memoryview(buf))
    return bytes(buf[:got])


def _write_all(out: IO[bytes], data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = out.write(view)
        if n is None or n >= len(view):
            return
        view = view[n:]


@contextlib.contextmanager
def _open_input(source: Source) -> Iterator[IO[bytes]]:
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        try:
            fh = path.open("rb", buffering=0)
        except FileNotFoundError as e:
            raise InputError(f"bundle file not found: {path}", code="E_NOT_FOUND") from e
        except OSError as e:
            raise InputError(f"cannot read bundle file {path}: {e.strerror}", code="E_IO") from e
        with fh:
            yield fh
    else:
        yield source


def _require_aware(now: dt.datetime) -> dt.datetime:
    if now.tzinfo is None:
        raise InputError("time must be timezone-aware", code="E_INPUT")
    return now.astimezone(dt.UTC)


@contextlib.contextmanager
def _hash_threads(
    threaded: bool = True,
) -> Iterator[tuple[ThreadPoolExecutor | None, ThreadPoolExecutor | None]]:
    """Two single-thread executors: plaintext digests and the signed-region digest.

    One thread per hash object keeps each object's updates in order; two of them let the two
    SHA-256 passes run on two cores. For small inputs (receipts, queries) starting threads
    costs more than it saves: ``threaded=False`` yields no executors and hashing stays inline.
    """
    if not threaded:
        yield None, None
        return
    with (
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="bundle-sha-plain") as pt_pool,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="bundle-sha-signed") as ct_pool,
    ):
        yield pt_pool, ct_pool


class _SignedWriter:
    """Writes to ``out`` while hashing everything written (the signed region)."""

    def __init__(self, out: IO[bytes]):
        self.out = out
        self.hash = hashlib.sha256()
        self.length = 0

        self._pending: Future[None] | None = None

    def write(
        self, data: bytes | bytearray | memoryview, pool: ThreadPoolExecutor | None = None
    ) -> None:
        """Write ``data``; with ``pool`` hash it there (call :meth:`wait` before reusing it)."""
        if not len(data):
            return
        if pool is None:
            self.wait()
            self.hash.update(data)
        else:
            self._pending = pool.submit(self.hash.update, data)
        _write_all(self.out, data)
        self.length += len(data)

    def wait(self) -> None:
        """Wait until the hashing of the last pooled write finished."""
        if self._pending is not None:
            self._pending.result()
            self._pending = None


# --- seal ----------------------------------------------------------------------------------


@dataclass
class _Prepared:
    name: str
    source: Path | BinaryIO
    size: int
    media_type: str
    records: int | None


def _prepare_member(m: Member, limits: Limits) -> _Prepared:
    try:
        name = check_member_name(m.name)
    except ValueError as e:
        raise InputError(f"member name {m.name!r} refused: {e}", code="E_NAME") from e
    try:
        media_type = check_media_type(m.media_type or guess_media_type(name))
    except ValueError as e:
        raise InputError(str(e), code="E_INPUT") from e
    if m.records is not None and (
        not isinstance(m.records, int) or isinstance(m.records, bool) or m.records < 0
    ):
        raise InputError(f"member {name!r}: records must be a non-negative integer")
    size = m.size
    if isinstance(m.source, str | os.PathLike):
        path = Path(m.source)
        try:
            st = path.stat()
        except FileNotFoundError as e:
            raise InputError(f"file not found: {path}", code="E_NOT_FOUND") from e
        except OSError as e:
            raise InputError(f"cannot read {path}: {e.strerror}", code="E_IO") from e
        if not path.is_file():
            raise InputError(f"{path} is not a regular file", code="E_INPUT")
        if size is None:
            size = st.st_size
        source: Path | BinaryIO = path
    else:
        source = m.source
        if size is None:
            if not source.seekable():
                raise InputError(f"member {name!r}: give the size of a non-seekable stream")
            here = source.tell()
            size = source.seek(0, os.SEEK_END) - here
            source.seek(here)
    if not isinstance(size, int) or size < 0:
        raise InputError(f"member {name!r}: invalid size {size!r}")
    if size > limits.max_member_size:
        raise InputError(
            f"member {name!r} has {size} bytes, more than the limit {limits.max_member_size}",
            code="E_LIMIT",
        )
    return _Prepared(name, source, size, media_type, m.records)


@contextlib.contextmanager
def _member_stream(p: _Prepared) -> Iterator[IO[bytes]]:
    if isinstance(p.source, Path):
        try:
            fh = p.source.open("rb", buffering=0)
        except OSError as e:
            raise InputError(f"cannot read {p.source}: {e.strerror}", code="E_IO") from e
        with fh:
            yield fh
    else:
        yield p.source


def _check_sender(
    signer_key: PrivateKey, signer_chain: Sequence[x509.Certificate], limits: Limits
) -> str:
    if not signer_chain:
        raise InputError("the sender certificate chain is empty", code="E_INPUT")
    if len(signer_chain) > limits.max_chain_length:
        raise InputError(
            f"sender chain has {len(signer_chain)} certificates (max {limits.max_chain_length})",
            code="E_LIMIT",
        )
    try:
        alg = signature_alg_for(signer_key)
    except ValueError as e:
        raise InputError(f"sender key cannot sign bundles: {e}", code="E_KEY_FORMAT") from e
    if not check_key_pair(signer_key, signer_chain[0]):
        raise InputError(
            "the sender key does not belong to the sender certificate", code="E_KEY_MISMATCH"
        )
    return alg


def seal(
    members: Sequence[Member],
    out: BinaryIO,
    *,
    signer_key: PrivateKey,
    signer_chain: Sequence[x509.Certificate],
    recipients: Sequence[x509.Certificate],
    kind: BundleKind | str,
    fields: Mapping[str, Any] | None = None,
    now: dt.datetime,
    ttl: dt.timedelta = DEFAULT_TTL,
    bundle_id: uuid.UUID | None = None,
    rng: Rng = os.urandom,
    limits: Limits = DEFAULT_LIMITS,
    progress: Progress | None = None,
) -> SealResult:
    """Sign and encrypt ``members`` for ``recipients``, streaming the bundle to ``out``.

    ``signer_chain`` is the sender's certificate then its intermediates (as issued certificate
    files hold them); ``signer_key`` must match the first. Every recipient gets the content
    key wrapped for its certificate (ECDH P-256 + HKDF + AES-KW, or RSA-OAEP-SHA256); the
    caller is responsible for having checked the recipients' certificates
    (:func:`pki.verify.verify_certificate`). ``fields`` are kind-specific JSON values (no
    floats) stored in the encrypted manifest.

    Reads each member exactly once in ``limits.io_block_size`` blocks; memory does not grow
    with the size of the members. ``progress`` is called with the number of plaintext bytes
    processed since the last call.

    Raises :class:`InputError` for bad input (unsafe or duplicate member names, unreadable
    files, a member whose size differs from the declared one, keys not matching certificates,
    unsupported key types, exceeded ``limits`` with code ``E_LIMIT``, and ``E_IO`` when reading
    a member or writing ``out`` fails). On error, ``out`` holds a partial bundle: use
    :func:`seal_to_file` for all-or-nothing output.
    """
    try:
        return _seal(
            members,
            out,
            signer_key=signer_key,
            signer_chain=signer_chain,
            recipients=recipients,
            kind=kind,
            fields=fields,
            now=now,
            ttl=ttl,
            bundle_id=bundle_id,
            rng=rng,
            limits=limits,
            progress=progress,
        )
    except OSError as e:
        raise InputError(f"I/O error while sealing: {e}", code="E_IO") from e


def _seal(
    members: Sequence[Member],
    out: BinaryIO,
    *,
    signer_key: PrivateKey,
    signer_chain: Sequence[x509.Certificate],
    recipients: Sequence[x509.Certificate],
    kind: BundleKind | str,
    fields: Mapping[str, Any] | None = None,
    now: dt.datetime,
    ttl: dt.timedelta = DEFAULT_TTL,
    bundle_id: uuid.UUID | None = None,
    rng: Rng = os.urandom,
    limits: Limits = DEFAULT_LIMITS,
    progress: Progress | None = None,
) -> SealResult:
    now = _require_aware(now)
    try:
        bundle_kind = BundleKind(kind)
    except ValueError as e:
        choices = ", ".join(k.value for k in BundleKind)
        raise InputError(f"unknown bundle kind {kind!r}; choose one of: {choices}") from e
    if ttl <= dt.timedelta(0):
        raise InputError("the bundle lifetime (ttl) must be positive")
    try:
        fields_obj = check_fields(fields or {})
    except ValueError as e:
        raise InputError(f"bundle fields: {e}") from e
    signature_alg = _check_sender(signer_key, signer_chain, limits)

    if not recipients:
        raise InputError("a bundle needs at least one recipient", code="E_INPUT")
    if len(recipients) > limits.max_recipients:
        raise InputError(
            f"{len(recipients)} recipients, more than the limit {limits.max_recipients}",
            code="E_LIMIT",
        )
    fps = [fingerprint(c) for c in recipients]
    if len(set(fps)) != len(fps):
        raise InputError("a recipient certificate is given twice", code="E_INPUT")
    for cert in recipients:
        try:
            key_alg_for(cert)
        except ValueError as e:
            raise InputError(
                f"cannot encrypt to {cert.subject.rfc4514_string()}: {e}", code="E_KEY_FORMAT"
            ) from e

    if len(members) > limits.max_members:
        raise InputError(
            f"{len(members)} members, more than the limit {limits.max_members}", code="E_LIMIT"
        )
    prepared = [_prepare_member(m, limits) for m in members]
    seen: set[str] = set()
    for p in prepared:
        if name_key(p.name) in seen:
            raise InputError(f"member name {p.name!r} is used twice", code="E_NAME")
        seen.add(name_key(p.name))

    # The manifest's size is known before reading any data: every field but sha256 is, and a
    # SHA-256 hex digest always has 64 characters.
    draft = Manifest(
        tuple(ManifestMember(p.name, p.size, "0" * 64, p.media_type, p.records) for p in prepared),
        fields_obj,
    )
    manifest_len = len(draft.encode())
    if manifest_len > limits.max_manifest_size:
        raise InputError(
            f"manifest would have {manifest_len} bytes, more than {limits.max_manifest_size}",
            code="E_LIMIT",
        )

    bid = BundleId(bundle_id or uuid.UUID(bytes=rng(16), version=4))
    content_key = rng(CONTENT_KEY_LEN)
    if len(content_key) != CONTENT_KEY_LEN:
        raise InputError("rng returned the wrong number of bytes")
    created = now.replace(microsecond=0)
    expires = (created + ttl).replace(microsecond=0)
    chain_der = tuple(c.public_bytes(serialization.Encoding.DER) for c in signer_chain)
    header = BundleHeader(
        bundle_id=bid,
        kind=bundle_kind,
        created_at=created,
        expires_at=expires,
        sender_chain=chain_der,
        signature_alg=signature_alg,
        content_alg=CONTENT_COBBLESTONE_128,
        recipients=tuple(wrap_key(c, content_key, bid, rng) for c in recipients),
        version=FORMAT_VERSION,
        certificates=tuple(signer_chain),
    )
    header_bytes = header.encode()
    if len(header_bytes) > limits.max_header_size:
        raise InputError(
            f"header would have {len(header_bytes)} bytes, more than {limits.max_header_size}",
            code="E_LIMIT",
        )
    inner_len = len(INNER_MAGIC) + 4 + sum(8 + p.size for p in prepared) + 4 + manifest_len
    max_length = (
        PREFIX_LEN
        + len(header_bytes)
        + ciphertext_size(inner_len)
        + MAX_SIGNATURE_SIZE
        + len(header.chain_der)
        + FOOTER_LEN
    )
    if max_length > limits.max_total_size:
        raise InputError(
            f"the bundle would have about {max_length} bytes, more than {limits.max_total_size}",
            code="E_LIMIT",
        )

    w = _SignedWriter(out)
    w.write(MAGIC + _U32.pack(len(header_bytes)) + header_bytes)
    enc = Cobblestone128Encryptor(content_key, _content_context(header_bytes))
    block = limits.io_block_size
    total = sum(p.size for p in prepared)
    # Small bundles need neither a full block of buffer nor hashing threads.
    block = max(4096, min(block, total))
    pt_buf = bytearray(block)
    ct_buf = bytearray(block + block // 1024 + 64 * 1024)
    digests: list[str] = []
    with _hash_threads(total >= 4 * limits.io_block_size) as (pt_pool, ct_pool):
        w.write(enc.update(INNER_MAGIC + _U32.pack(len(prepared))))
        for p in prepared:
            w.write(enc.update(_U64.pack(p.size)))
            digest = hashlib.sha256()
            with _member_stream(p) as src:
                remaining = p.size
                while remaining:
                    view = memoryview(pt_buf)[: min(block, remaining)]
                    n = _readinto(src, view)
                    if n == 0:
                        raise InputError(
                            f"member {p.name!r} ended {remaining} bytes early "
                            "(did the file change while sealing?)",
                            code="E_SIZE_CHANGED",
                        )
                    chunk = view[:n]
                    # The two SHA-256 passes (plaintext for the manifest, ciphertext for
                    # the signature) run in their own threads (hashlib releases the GIL)
                    # while this thread reads, encrypts and writes.
                    hashed: Future[None] | None = None
                    if pt_pool is not None:
                        hashed = pt_pool.submit(digest.update, chunk)
                    else:
                        digest.update(chunk)
                    k = enc.update_into(chunk, ct_buf)
                    w.write(memoryview(ct_buf)[:k], ct_pool)
                    if hashed is not None:
                        hashed.result()
                    w.wait()
                    remaining -= n
                    if progress is not None:
                        progress(n)
                if _read_exact(src, 1):
                    raise InputError(
                        f"member {p.name!r} has more than the declared {p.size} bytes",
                        code="E_SIZE_CHANGED",
                    )
            digests.append(digest.hexdigest())
        manifest = Manifest(
            tuple(
                ManifestMember(p.name, p.size, d, p.media_type, p.records)
                for p, d in zip(prepared, digests, strict=True)
            ),
            fields_obj,
        )
        manifest_bytes = manifest.encode()
        w.write(enc.update(_U32.pack(len(manifest_bytes)) + manifest_bytes))
        w.write(enc.finalize())

    signed_length = w.length
    signed_hash = w.hash.copy()
    signature = sign_digest(signer_key, w.hash.digest())
    footer = (
        signature
        + header.chain_der
        + _U32.pack(len(signature))
        + _U32.pack(len(header.chain_der))
        + FOOTER_MAGIC
    )
    _write_all(out, footer)
    signed_hash.update(footer)
    return SealResult(
        header=header,
        manifest=manifest,
        signed_length=signed_length,
        length=signed_length + len(footer),
        sha256=signed_hash.hexdigest(),
    )


def seal_to_file(
    members: Sequence[Member],
    path: Path,
    *,
    overwrite: bool = False,
    signer_key: PrivateKey,
    signer_chain: Sequence[x509.Certificate],
    recipients: Sequence[x509.Certificate],
    kind: BundleKind | str,
    fields: Mapping[str, Any] | None = None,
    now: dt.datetime,
    ttl: dt.timedelta = DEFAULT_TTL,
    bundle_id: uuid.UUID | None = None,
    rng: Rng = os.urandom,
    limits: Limits = DEFAULT_LIMITS,
    progress: Progress | None = None,
) -> SealResult:
    """:func:`seal` into ``path`` atomically: the file appears complete or not at all.

    Refuses to replace an existing file unless ``overwrite`` (``InputError`` ``E_EXISTS``).
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"output folder {path.parent} does not exist", code="E_NOT_FOUND")
    try:
        with atomic_output(path, 0o644, exclusive=not overwrite) as fh:
            return seal(
                members,
                fh,
                signer_key=signer_key,
                signer_chain=signer_chain,
                recipients=recipients,
                kind=kind,
                fields=fields,
                now=now,
                ttl=ttl,
                bundle_id=bundle_id,
                rng=rng,
                limits=limits,
                progress=progress,
            )
    except FileExistsError as e:
        raise InputError(f"refusing to overwrite {path}", code="E_EXISTS") from e


# --- verify --------------------------------------------------------------------------------


def _certificate_rejection(e: CertificateError) -> BundleError:
    detail = e.message + (f": {e.detail}" if e.detail else "")
    return reject(e.code, f"sender certificate: {detail}", reason=REASONS.get(e.code))


def _check_sender_certificate(
    header: BundleHeader, trust: TrustStore, now: dt.datetime
) -> CertifiedIdentity:
    leaf, *rest = header.certificates
    try:
        return verify_certificate(leaf, trust, now=now, chain=rest, role=None)
    except CertificateError as e:
        raise _certificate_rejection(e) from None
    except CERTIFICATE_PARSE_ERRORS as e:
        # cryptography parses extensions lazily: a hostile certificate can fail deep inside
        # the chain builder. It is still just a bad bundle.
        raise reject("E_CHAIN", f"sender certificate cannot be processed: {e}") from None


def _check_bundle_times(header: BundleHeader, now: dt.datetime) -> None:
    if header.created_at > now + CLOCK_SKEW:
        raise reject(
            "E_NOT_YET_VALID",
            f"bundle created_at {format_time(header.created_at)} is in the future "
            f"(now {format_time(now)})",
            reason="bundle is dated in the future",
        )
    if now > header.expires_at:
        raise reject(
            "E_EXPIRED",
            f"the bundle (not the certificate) expired at {format_time(header.expires_at)} "
            f"(now {format_time(now)})",
            reason="bundle has expired",
        )


def _read_prefix_and_header(src: IO[bytes], limits: Limits) -> tuple[bytes, bytes]:
    prefix = _read_exact(src, PREFIX_LEN)
    start = prefix[: len(MAGIC_PREFIX)]
    if start != MAGIC_PREFIX[: len(start)]:
        raise reject("E_FORMAT", "not a bundle (wrong magic)")
    if len(prefix) < PREFIX_LEN:
        raise reject("E_TRUNCATED", f"file ends after {len(prefix)} bytes")
    if prefix[: len(MAGIC)] != MAGIC:
        raise reject("E_VERSION", f"magic names format version {prefix[7:8]!r}, not 1")
    (header_len,) = _U32.unpack(prefix[8:12])
    if header_len == 0:
        raise reject("E_FORMAT", "header length is 0")
    if header_len > limits.max_header_size:
        raise reject("E_LIMIT", f"header length {header_len} > {limits.max_header_size}")
    header_bytes = _read_exact(src, header_len)
    if len(header_bytes) < header_len:
        raise reject("E_TRUNCATED", "file ends inside the header")
    return prefix, header_bytes


def _verify_stream(
    src: IO[bytes],
    trust: TrustStore,
    now: dt.datetime,
    limits: Limits,
    progress: Progress | None,
) -> VerifiedBundle:
    prefix, header_bytes = _read_prefix_and_header(src, limits)
    header = parse_header(header_bytes, limits)
    # Cheap checks first: an unknown or revoked sender is refused before we read gigabytes.
    sender = _check_sender_certificate(header, trust, now)
    _check_bundle_times(header, now)
    if progress is not None:
        progress(len(prefix) + len(header_bytes))

    # Stream the rest, hashing all but the last `window` bytes, which may be the signature
    # block. The window is bounded: the footer's chain must equal the header's.
    chain_der = header.chain_der
    window = FOOTER_LEN + len(chain_der) + MAX_SIGNATURE_SIZE
    signed = hashlib.sha256(prefix)
    signed.update(header_bytes)
    hashed = len(prefix) + len(header_bytes)
    total = hashed
    pending = bytearray()
    block = limits.io_block_size
    buf = bytearray(max(block, window))
    view = memoryview(buf)
    while True:
        n = _readinto(src, view[:block])
        if n == 0:
            break
        total += n
        if total > limits.max_total_size:
            raise reject("E_LIMIT", f"bundle is larger than {limits.max_total_size} bytes")
        if n >= window:
            signed.update(pending)
            signed.update(view[: n - window])
            hashed += len(pending) + n - window
            pending = bytearray(view[n - window : n])
        else:
            pending += view[:n]
            if len(pending) > window:
                cut = len(pending) - window
                signed.update(memoryview(pending)[:cut])
                hashed += cut
                del pending[:cut]
        if progress is not None:
            progress(n)

    if len(pending) < FOOTER_LEN or pending[-8:] != FOOTER_MAGIC:
        raise reject("E_TRUNCATED", "the file does not end with the signature footer")
    sig_len, chain_len = struct.unpack(">II", pending[-16:-8])
    if chain_len != len(chain_der):
        raise reject("E_FORMAT", "footer chain length differs from the header's sender_chain")
    if not 1 <= sig_len <= MAX_SIGNATURE_SIZE:
        raise reject("E_FORMAT", f"footer signature length {sig_len} out of range")
    footer_block = sig_len + chain_len + FOOTER_LEN
    if footer_block > len(pending):
        raise reject("E_TRUNCATED", "the file is too short for its signature block")
    split = len(pending) - footer_block
    signed.update(memoryview(pending)[:split])
    signed_length = hashed + split
    ciphertext_len = signed_length - len(prefix) - len(header_bytes)
    if ciphertext_len < _MIN_CIPHERTEXT:
        raise reject("E_FORMAT", f"ciphertext of {ciphertext_len} bytes is too short")
    signature = bytes(pending[split : split + sig_len])
    footer_chain = bytes(pending[split + sig_len : split + sig_len + chain_len])
    if footer_chain != chain_der:
        raise reject("E_FORMAT", "footer chain differs from the header's sender_chain")
    digest = signed.digest()
    whole = signed.copy()
    whole.update(memoryview(pending)[split:])
    verify_digest(header.certificates[0], header.signature_alg, signature, digest)
    return VerifiedBundle(
        header=header,
        sender=sender,
        signed_length=signed_length,
        length=total,
        sha256=whole.hexdigest(),
        header_bytes=header_bytes,
        signed_digest=digest,
        signature=signature,
    )


def verify(
    source: Source,
    trust: TrustStore,
    *,
    now: dt.datetime,
    limits: Limits = DEFAULT_LIMITS,
    progress: Progress | None = None,
) -> VerifiedBundle:
    """Check a bundle without any private key (relays, auditors, before every open).

    ``source`` is a path or a binary stream positioned at the bundle's start (it need not be
    seekable; it is read once, to the end, in ``limits.io_block_size`` blocks). Checks the
    layout and limits, the header (strictly), the sender certificate chain against ``trust``
    with CRLs at ``now`` (any department or node certificate), the bundle's times
    (``created_at`` at most :data:`CLOCK_SKEW` ahead of ``now``; ``now`` not after
    ``expires_at``) and the signature over everything before it.

    Returns a :class:`VerifiedBundle`. Raises :class:`BundleError` with one of ``E_FORMAT``,
    ``E_VERSION``, ``E_ALGORITHM``, ``E_LIMIT``, ``E_TRUNCATED``, ``E_SIGNATURE``, the
    certificate codes (``E_CHAIN``, ``E_EXPIRED``, ``E_NOT_YET_VALID``, ``E_REVOKED``,
    ``E_CRL_MISSING``, ``E_CRL_STALE``, ``E_CRL_INVALID``, ``E_KEY_USAGE``, ``E_IDENTITY``,
    ``E_TRUST``) or ``E_EXPIRED`` / ``E_NOT_YET_VALID`` for the bundle's own times; raises
    :class:`InputError` if the file cannot be read.
    """
    now = _require_aware(now)
    with _open_input(source) as src:
        try:
            return _verify_stream(src, trust, now, limits, progress)
        except OSError as e:
            raise InputError(f"cannot read bundle: {e}", code="E_IO") from e


# --- open ----------------------------------------------------------------------------------


@dataclass
class _PartFile:
    path: Path
    size: int
    sha256: str


class _InnerParser:
    """Splits the decrypted inner stream into member files and the manifest, checking limits.

    Inner stream: "SAXI" | u32 count | count x (u64 size | size bytes) | u32 M | manifest.
    Member bytes go to numbered files in a private temporary folder; their SHA-256 runs in
    ``pool`` while this thread writes.
    """

    def __init__(self, folder: Path, limits: Limits, pool: ThreadPoolExecutor):
        self.folder = folder
        self.limits = limits
        self.pool = pool
        self.state = "preamble"
        self.small = bytearray()
        self.count = 0
        self.index = 0
        self.remaining = 0
        self.size = 0
        self.fd = -1
        self.digest = hashlib.sha256()
        self.parts: list[_PartFile] = []
        self.manifest_len = 0
        self.manifest = bytearray()

    def _need(self) -> int:
        return {"preamble": 8, "size": 8, "manifest_len": 4}[self.state]

    def _start_member(self) -> None:
        path = self.folder / f"{self.index:06d}.part"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        self.fd = os.open(path, flags, 0o600)
        self.parts.append(_PartFile(path, self.size, ""))
        self.digest = hashlib.sha256()
        self.remaining = self.size
        self.state = "data"
        if self.size == 0:
            self._end_member()

    def _end_member(self) -> None:
        os.fsync(self.fd)
        os.close(self.fd)
        self.fd = -1
        self.parts[-1].sha256 = self.digest.hexdigest()
        self.index += 1
        self.state = "size" if self.index < self.count else "manifest_len"

    def _fixed_field(self, data: bytes) -> None:
        if self.state == "preamble":
            if data[:4] != INNER_MAGIC:
                raise reject("E_FORMAT", "decrypted content does not start with SAXI")
            (self.count,) = _U32.unpack(data[4:8])
            if self.count > self.limits.max_members:
                raise reject("E_LIMIT", f"{self.count} members > {self.limits.max_members}")
            self.state = "size" if self.count else "manifest_len"
        elif self.state == "size":
            (self.size,) = _U64.unpack(data)
            if self.size > self.limits.max_member_size:
                raise reject("E_LIMIT", f"member {self.index} has {self.size} bytes")
            self._start_member()
        else:
            (self.manifest_len,) = _U32.unpack(data)
            if self.manifest_len > self.limits.max_manifest_size:
                raise reject("E_LIMIT", f"manifest of {self.manifest_len} bytes")
            self.state = "manifest" if self.manifest_len else "done"

    def feed(self, data: memoryview) -> None:
        pos = 0
        end = len(data)
        while pos < end:
            if self.state in ("preamble", "size", "manifest_len"):
                take = min(self._need() - len(self.small), end - pos)
                self.small += data[pos : pos + take]
                pos += take
                if len(self.small) == self._need():
                    field_bytes = bytes(self.small)
                    self.small.clear()
                    self._fixed_field(field_bytes)
            elif self.state == "data":
                take = min(self.remaining, end - pos)
                piece = data[pos : pos + take]
                hashed = self.pool.submit(self.digest.update, piece)
                try:
                    view = piece
                    while view:
                        view = view[os.write(self.fd, view) :]
                finally:
                    hashed.result()
                pos += take
                self.remaining -= take
                if self.remaining == 0:
                    self._end_member()
            elif self.state == "manifest":
                take = min(self.manifest_len - len(self.manifest), end - pos)
                self.manifest += data[pos : pos + take]
                pos += take
                if len(self.manifest) == self.manifest_len:
                    self.state = "done"
            else:
                raise reject("E_FORMAT", "data follows the manifest in the decrypted content")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def finish(self) -> tuple[Manifest, list[_PartFile]]:
        if self.state != "done":
            raise reject("E_FORMAT", f"decrypted content ends early (in {self.state})")
        manifest = parse_manifest(bytes(self.manifest), self.limits)
        if len(manifest.members) != len(self.parts):
            raise reject(
                "E_MANIFEST",
                f"manifest lists {len(manifest.members)} members, content holds {len(self.parts)}",
            )
        for i, (m, part) in enumerate(zip(manifest.members, self.parts, strict=True)):
            if m.size != part.size:
                raise reject("E_MANIFEST", f"member {i}: {part.size} bytes, manifest {m.size}")
            if m.sha256 != part.sha256:
                raise reject("E_MANIFEST", f"member {i}: SHA-256 differs from the manifest")
        return manifest, self.parts


def _decrypt_pass(
    src: IO[bytes],
    verified: VerifiedBundle,
    content_key: bytes,
    folder: Path,
    limits: Limits,
    progress: Progress | None,
) -> tuple[Manifest, list[_PartFile]]:
    start = PREFIX_LEN + len(verified.header_bytes)
    head = _read_exact(src, start)
    expected = MAGIC + _U32.pack(len(verified.header_bytes)) + verified.header_bytes
    if head != expected:
        raise reject("E_SIGNATURE", "the bundle changed between verification and decryption")
    signed = hashlib.sha256(head)
    if progress is not None:
        progress(len(head))
    dec = Cobblestone128Decryptor(content_key, _content_context(verified.header_bytes))
    block = limits.io_block_size
    ct_buf = bytearray(block)
    pt_buf = bytearray(block + 2 * _CHUNK + 64)
    remaining = verified.signed_length - start
    with _hash_threads() as (pt_pool, ct_pool):
        assert pt_pool is not None and ct_pool is not None  # threaded=True yields both
        parser = _InnerParser(folder, limits, pt_pool)
        try:
            while remaining:
                view = memoryview(ct_buf)[: min(block, remaining)]
                n = _readinto(src, view)
                if n == 0:
                    raise reject("E_SIGNATURE", "the bundle shrank after verification")
                chunk = view[:n]
                # One thread hashes the ciphertext, another (fed by the parser) the members,
                # while this thread reads, decrypts and writes.
                signed_hashed = ct_pool.submit(signed.update, chunk)
                try:
                    try:
                        k = dec.update_into(chunk, pt_buf)
                    except InvalidTag:
                        raise reject(
                            "E_DECRYPT", "a ciphertext chunk failed authentication"
                        ) from None
                    parser.feed(memoryview(pt_buf)[:k])
                finally:
                    signed_hashed.result()
                remaining -= n
                if progress is not None:
                    progress(n)
            try:
                tail = dec.finalize()
            except InvalidTag:
                raise reject(
                    "E_DECRYPT", "the final ciphertext chunk failed authentication"
                ) from None
            # The ciphertext just decrypted must be the one whose signature was checked
            # (defeats swapping the file between the verify pass and this pass).
            if signed.digest() != verified.signed_digest:
                raise reject(
                    "E_SIGNATURE", "the bundle changed between verification and decryption"
                )
            parser.feed(memoryview(tail))
            return parser.finish()
        finally:
            parser.close()


def _publish(
    staging: Path, parts: list[_PartFile], manifest: Manifest, out_dir: Path
) -> list[Path]:
    """Give the parts their names and make them appear in ``out_dir``; all or nothing.

    ``staging`` is an empty private folder on the same file system as ``out_dir``.
    """
    for part, member in zip(parts, manifest.members, strict=True):
        part.path.rename(staging / member.name)
        part.path = staging / member.name
    fsync_dir(staging)
    final = [out_dir / m.name for m in manifest.members]
    if not out_dir.exists() and not out_dir.is_symlink():
        try:
            staging.rename(out_dir)  # one atomic step: the folder appears complete
        except OSError as e:
            raise InputError(f"cannot create {out_dir}: {e.strerror}", code="E_IO") from e
        fsync_dir(out_dir.parent)
        return final
    if not out_dir.is_dir():
        raise InputError(f"{out_dir} exists and is not a folder", code="E_EXISTS")
    done: list[Path] = []
    try:
        for part, target in zip(parts, final, strict=True):
            # os.link never replaces an existing name (nor follows a symlink planted there).
            os.link(part.path, target)
            done.append(target)
    except FileExistsError as e:
        for path in done:
            path.unlink(missing_ok=True)
        raise InputError(
            f"{e.filename2 or e.filename} already exists; nothing was written", code="E_EXISTS"
        ) from e
    except OSError as e:
        for path in done:
            path.unlink(missing_ok=True)
        raise InputError(f"cannot write into {out_dir}: {e.strerror}", code="E_IO") from e
    fsync_dir(out_dir)
    return final


def open_bundle(
    source: Source,
    out_dir: Path,
    *,
    recipient_key: PrivateKey,
    recipient_cert: x509.Certificate,
    trust: TrustStore,
    now: dt.datetime,
    limits: Limits = DEFAULT_LIMITS,
    progress: Progress | None = None,
) -> OpenedBundle:
    """Verify, decrypt and check a bundle, then place its members in ``out_dir``.

    Two passes over ``source`` (a path or a seekable binary stream): :func:`verify` first (no
    decryption before the signature, chain, CRL and times check out, and the bundle names
    ``recipient_cert`` as a recipient), then decryption into a private temporary folder beside
    ``out_dir`` while the signed region is hashed again and must match the verified digest.
    Every member's size and SHA-256, and the member count, must match the manifest. Only then
    do the members appear in ``out_dir`` (created if missing, mode 0700; files mode 0600),
    never replacing existing files. On any failure nothing appears in ``out_dir`` and the
    temporary folder is removed.

    Raises :class:`BundleError` (every code of :func:`verify`, plus ``E_RECIPIENT``,
    ``E_DECRYPT``, ``E_MANIFEST``, ``E_FORMAT``, ``E_LIMIT`` for the decrypted content) and
    :class:`InputError` (key not matching the certificate, unreadable bundle, name already
    present in ``out_dir`` with code ``E_EXISTS``).
    """
    now = _require_aware(now)
    out_dir = Path(out_dir)
    if not check_key_pair(recipient_key, recipient_cert):
        raise InputError(
            "the recipient key does not belong to the recipient certificate",
            code="E_KEY_MISMATCH",
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir} exists and is not a folder", code="E_EXISTS")
    with _open_input(source) as src:
        if not src.seekable():
            raise InputError("opening a bundle needs a seekable file (two passes)")
        start = src.tell()
        try:
            verified = _verify_stream(src, trust, now, limits, progress)
        except OSError as e:
            raise InputError(f"cannot read bundle: {e}", code="E_IO") from e
        fp = fingerprint(recipient_cert)
        entry = verified.header.recipient(fp)
        if entry is None:
            raise reject("E_RECIPIENT", f"no recipient entry for certificate {fp[:16]}…")
        content_key = unwrap_key(entry, recipient_key, recipient_cert, verified.header.bundle_id)

        parent = out_dir.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            folder = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.opening-", dir=parent))
        except OSError as e:
            raise InputError(
                f"cannot create a folder in {parent}: {e.strerror}", code="E_IO"
            ) from e
        try:
            # Parts and named files live in separate folders: a member may be called
            # "000001.part" without ever touching another member's data.
            parts_dir = folder / "parts"
            staging = folder / "out"
            parts_dir.mkdir(mode=0o700)
            staging.mkdir(mode=0o700)
            src.seek(start)
            try:
                manifest, parts = _decrypt_pass(
                    src, verified, content_key, parts_dir, limits, progress
                )
                paths = _publish(staging, parts, manifest, out_dir)
            except OSError as e:
                raise InputError(f"I/O error while opening the bundle: {e}", code="E_IO") from e
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return OpenedBundle(verified=verified, manifest=manifest, paths=tuple(paths))


# --- signature pieces for stock tools --------------------------------------------------------


@dataclass(frozen=True)
class SignatureParts:
    """Where the signature of a bundle is and what it is, for checking with stock OpenSSL.

    Produced by :func:`signature_parts` *without* verifying anything.
    """

    signed_length: int
    signature: bytes
    #: The sender's certificates (DER), leaf first, as the footer holds them.
    chain: tuple[bytes, ...]
    signature_alg: str
    header: BundleHeader


def signature_parts(path: Path, *, limits: Limits = DEFAULT_LIMITS) -> SignatureParts:
    """Read the signature block of the bundle at ``path`` (seeking; the body is not read).

    Checks only the layout (magic, header, footer, chain equal to the header's); raises
    :class:`BundleError` like :func:`verify` for a malformed or truncated file. Used by
    ``exchange-pki bundle extract-signature`` to hand the pieces to ``openssl``.
    """
    with _open_input(Path(path)) as src:
        prefix, header_bytes = _read_prefix_and_header(src, limits)
        header = parse_header(header_bytes, limits)
        size = src.seek(0, os.SEEK_END)
        if size > limits.max_total_size:
            raise reject("E_LIMIT", f"bundle is larger than {limits.max_total_size} bytes")
        body = size - len(prefix) - len(header_bytes)
        if body < FOOTER_LEN:
            raise reject("E_TRUNCATED", "the file does not end with the signature footer")
        src.seek(size - FOOTER_LEN)
        footer = _read_exact(src, FOOTER_LEN)
        if footer[8:] != FOOTER_MAGIC:
            raise reject("E_TRUNCATED", "the file does not end with the signature footer")
        sig_len, chain_len = struct.unpack(">II", footer[:8])
        chain_der = header.chain_der
        if chain_len != len(chain_der) or not 1 <= sig_len <= MAX_SIGNATURE_SIZE:
            raise reject("E_FORMAT", "footer lengths do not fit the header")
        if sig_len + chain_len + FOOTER_LEN > body:
            raise reject("E_TRUNCATED", "the file is too short for its signature block")
        signed_length = size - FOOTER_LEN - chain_len - sig_len
        src.seek(signed_length)
        block = _read_exact(src, sig_len + chain_len)
        if block[sig_len:] != chain_der:
            raise reject("E_FORMAT", "footer chain differs from the header's sender_chain")
    return SignatureParts(
        signed_length=signed_length,
        signature=block[:sig_len],
        chain=header.sender_chain,
        signature_alg=header.signature_alg,
        header=header,
    )
