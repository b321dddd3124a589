"""Verifying a bundle without a private key: layout, header, signature, sender chain, CRL and times.

:func:`verify` reads the bundle once, streaming, and raises only
:class:`~pki._bundle_format.BundleError` for a bad bundle (opaque message, precise ``detail`` in
the ``pki.bundle`` log). :func:`signature_parts` reads the signature block for stock OpenSSL
without verifying anything; :func:`sealed_header` tells a sealed bundle from any other file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from exchange_common.errors import CertificateError, InputError
from exchange_common.limits import DEFAULT_LIMITS, Limits
from exchange_common.timefmt import rfc3339
from pki._bundle_crypto import (
    verify_digest,
)
from pki._bundle_format import (
    CERTIFICATE_PARSE_ERRORS,
    FOOTER_LEN,
    FOOTER_MAGIC,
    MAGIC,
    MAGIC_PREFIX,
    MAX_SIGNATURE_SIZE,
    PREFIX_LEN,
    REASONS,
    BundleError,
    reject,
)
from pki._bundle_header import BundleHeader, parse_header
from pki.bundle._streams import (
    _MIN_CIPHERTEXT,
    _U32,
    CLOCK_SKEW,
    Progress,
    Source,
    _open_input,
    _read_exact,
    _readinto,
    _require_aware,
)
from pki.bundle.values import VerifiedBundle
from pki.identity import CertifiedIdentity
from pki.verify import TrustStore, verify_certificate


def _certificate_rejection(e: CertificateError) -> BundleError:
    detail = e.message + (f": {e.detail}" if e.detail else "")
    return reject(e.code, f"sender certificate: {detail}", reason=REASONS.get(e.code))


def _check_sender_certificate(
    header: BundleHeader, trust: TrustStore, now: dt.datetime, *, revocation: bool = True
) -> CertifiedIdentity:
    leaf, *rest = header.certificates
    try:
        return verify_certificate(
            leaf, trust, now=now, chain=rest, role=None, require_crl=revocation
        )
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
            f"bundle created_at {rfc3339(header.created_at)} is in the future (now {rfc3339(now)})",
            reason="bundle is dated in the future",
        )
    if now > header.expires_at:
        raise reject(
            "E_EXPIRED",
            f"the bundle (not the certificate) expired at {rfc3339(header.expires_at)} "
            f"(now {rfc3339(now)})",
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
    *,
    revocation: bool = True,
) -> VerifiedBundle:
    prefix, header_bytes = _read_prefix_and_header(src, limits)
    header = parse_header(header_bytes, limits)
    # Cheap checks first: an unknown or revoked sender is refused before we read gigabytes.
    sender = _check_sender_certificate(header, trust, now, revocation=revocation)
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


def signer_for_receipt(
    source: Source, trust: TrustStore, *, now: dt.datetime, limits: Limits = DEFAULT_LIMITS
) -> str | None:
    """The code of the department that signed ``source`` when every check of :func:`verify`
    but revocation passes (layout, chain to a trusted root, times, signature); None otherwise.

    Only to address the receipt of a bundle that :func:`verify` *refused* for the state of the
    node's CRL (stale, missing, invalid): its verified signer learns why. It never makes a
    bundle acceptable, and a revoked signer is not looked for (its refusal names a revocation,
    which this skips).
    """
    try:
        with _open_input(source) as src:
            verified = _verify_stream(src, trust, now, limits, None, revocation=False)
    except (BundleError, InputError, OSError):
        return None
    return str(verified.sender.code)


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


def sealed_header(path: Path, *, limits: Limits = DEFAULT_LIMITS) -> BundleHeader | None:
    """The cleartext header of the file at ``path`` when it has a bundle's layout (magic,
    header, signature footer, as :func:`signature_parts` checks), else ``None``.

    Verifies nothing: it sorts files (is this a sealed bundle, and which id does it carry?),
    it never makes one trustworthy. A file that does not even start with the magic is
    answered without a log line, so scanning a folder of other files stays quiet. Never raises
    for a bad or unreadable file.
    """
    try:
        with Path(path).open("rb") as fh:
            if fh.read(len(MAGIC)) != MAGIC:
                return None
        return signature_parts(path, limits=limits).header
    except (BundleError, InputError, OSError):
        return None
