"""Sealing: sign and encrypt members for named recipients into one bundle (a stream or a file).

:func:`seal` never produces a bundle a v1 reader with the same limits would refuse: names, media
types, sizes and header fields are checked before a byte is written, and the sender's key must
match its certificate. :func:`seal_to_file` publishes atomically (temporary file, fsync, rename).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

from cryptography import x509
from cryptography.cobblestone import Cobblestone128Encryptor
from cryptography.hazmat.primitives import serialization

from exchange_common.errors import InputError
from exchange_common.fs import atomic_output
from exchange_common.limits import DEFAULT_LIMITS, Limits
from pki._bundle_crypto import (
    CONTENT_KEY_LEN,
    Rng,
    check_key_pair,
    key_alg_for,
    sign_digest,
    signature_alg_for,
    wrap_key,
)
from pki._bundle_format import (
    CONTENT_COBBLESTONE_128,
    FOOTER_LEN,
    FOOTER_MAGIC,
    FORMAT_VERSION,
    INNER_MAGIC,
    MAGIC,
    MAX_SIGNATURE_SIZE,
    PREFIX_LEN,
    BundleId,
    BundleKind,
    check_fields,
    check_media_type,
    check_member_name,
    name_key,
)
from pki._bundle_format import (
    content_context as _content_context,
)
from pki._bundle_header import BundleHeader
from pki._bundle_manifest import Manifest, ManifestMember
from pki.bundle._streams import (
    _U32,
    _U64,
    DEFAULT_TTL,
    Progress,
    _hash_threads,
    _read_exact,
    _readinto,
    _require_aware,
    _write_all,
    ciphertext_size,
    guess_media_type,
)
from pki.bundle.values import Member, SealResult
from pki.keys import PrivateKey, fingerprint


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
