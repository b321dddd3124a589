"""Opening a bundle: verify, then decrypt its members into a directory, publishing atomically.

:func:`open_bundle` runs :func:`~pki.bundle.verification.verify` first and decrypts nothing
before every check passed; members are decrypted into temporary files in the output directory
and published (renamed into place) only after every chunk, the member count and every member's
size and SHA-256 checked out and the file did not change since it was verified.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from cryptography import x509
from cryptography.cobblestone import Cobblestone128Decryptor
from cryptography.exceptions import InvalidTag

from exchange_common.errors import InputError
from exchange_common.fs import fsync_dir
from exchange_common.limits import DEFAULT_LIMITS, Limits
from pki._bundle_crypto import (
    check_key_pair,
    unwrap_key,
)
from pki._bundle_format import INNER_MAGIC, MAGIC, PREFIX_LEN, reject
from pki._bundle_format import (
    content_context as _content_context,
)
from pki._bundle_manifest import Manifest, parse_manifest
from pki.bundle._streams import (
    _CHUNK,
    _U32,
    _U64,
    Progress,
    Source,
    _hash_threads,
    _open_input,
    _read_exact,
    _readinto,
    _require_aware,
)
from pki.bundle.values import OpenedBundle, VerifiedBundle
from pki.bundle.verification import _verify_stream
from pki.keys import PrivateKey, fingerprint
from pki.verify import TrustStore

#: Signed content of at least this many bytes is hashed on helper threads while it decrypts.
_THREADED_FROM = 1 << 20


def _no_sync(path: Path) -> None:
    """A scratch folder is not synced (see ``durable`` in :func:`open_bundle`)."""


@dataclass
class _PartFile:
    path: Path
    size: int
    sha256: str


class _InnerParser:
    """Splits the decrypted inner stream into member files and the manifest, checking limits.

    Inner stream: "SAXI" | u32 count | count x (u64 size | size bytes) | u32 M | manifest.
    Member bytes go to numbered files in a private temporary folder; their SHA-256 runs in
    ``pool`` while this thread writes (inline without a pool). ``durable`` fsyncs each file.
    """

    def __init__(
        self, folder: Path, limits: Limits, pool: ThreadPoolExecutor | None, durable: bool
    ):
        self.folder = folder
        self.limits = limits
        self.pool = pool
        self.durable = durable
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
        if self.durable:
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
                hashed = None
                if self.pool is None:
                    self.digest.update(piece)
                else:
                    hashed = self.pool.submit(self.digest.update, piece)
                try:
                    view = piece
                    while view:
                        view = view[os.write(self.fd, view) :]
                finally:
                    if hashed is not None:
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
    durable: bool,
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
    # Threads pay off for large bundles only; a small one is hashed inline.
    with _hash_threads(threaded=remaining >= _THREADED_FROM) as (pt_pool, ct_pool):
        parser = _InnerParser(folder, limits, pt_pool, durable)
        try:
            while remaining:
                view = memoryview(ct_buf)[: min(block, remaining)]
                n = _readinto(src, view)
                if n == 0:
                    raise reject("E_SIGNATURE", "the bundle shrank after verification")
                chunk = view[:n]
                # One thread hashes the ciphertext, another (fed by the parser) the members,
                # while this thread reads, decrypts and writes.
                signed_hashed = None
                if ct_pool is None:
                    signed.update(chunk)
                else:
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
                    if signed_hashed is not None:
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
    staging: Path, parts: list[_PartFile], manifest: Manifest, out_dir: Path, durable: bool
) -> list[Path]:
    """Give the parts their names and make them appear in ``out_dir``; all or nothing.

    ``staging`` is an empty private folder on the same file system as ``out_dir``. Folders
    are fsynced when ``durable``.
    """
    sync = fsync_dir if durable else _no_sync
    for part, member in zip(parts, manifest.members, strict=True):
        part.path.rename(staging / member.name)
        part.path = staging / member.name
    sync(staging)
    final = [out_dir / m.name for m in manifest.members]
    if not out_dir.exists() and not out_dir.is_symlink():
        try:
            staging.rename(out_dir)  # one atomic step: the folder appears complete
        except OSError as e:
            raise InputError(f"cannot create {out_dir}: {e.strerror}", code="E_IO") from e
        sync(out_dir.parent)
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
    sync(out_dir)
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
    durable: bool = True,
    verified: VerifiedBundle | None = None,
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

    ``durable=False`` skips the fsyncs, for a scratch copy that a crash may lose (the node
    opens again from the stored bundle); the members still appear all at once or not at all.
    ``verified`` is what :func:`verify` returned for this file moments before, by the caller:
    the first pass is skipped, and decryption still requires the signed region to hash to
    the digest whose signature that verification checked (a file changed since is refused,
    ``E_SIGNATURE``).
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
        if verified is None:
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
                    src, verified, content_key, parts_dir, limits, progress, durable
                )
                paths = _publish(staging, parts, manifest, out_dir, durable)
            except OSError as e:
                raise InputError(f"I/O error while opening the bundle: {e}", code="E_IO") from e
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return OpenedBundle(verified=verified, manifest=manifest, paths=tuple(paths))
