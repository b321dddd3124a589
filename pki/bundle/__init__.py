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

This package re-exports the public API; the rooms behind it are :mod:`pki.bundle.sealing`,
:mod:`pki.bundle.verification`, :mod:`pki.bundle.opening`, :mod:`pki.bundle.values` (the
dataclasses) and :mod:`pki.bundle._streams` (constants, sizes, stream helpers).
"""

from __future__ import annotations

from pki._bundle_format import BundleError, BundleId, BundleKind
from pki._bundle_header import BundleHeader, parse_header
from pki._bundle_manifest import Manifest, ManifestMember
from pki.bundle._streams import CLOCK_SKEW, DEFAULT_TTL, ciphertext_size, guess_media_type
from pki.bundle.opening import open_bundle
from pki.bundle.sealing import seal, seal_to_file
from pki.bundle.values import Member, OpenedBundle, SealResult, VerifiedBundle
from pki.bundle.verification import (
    SignatureParts,
    sealed_header,
    signature_parts,
    signer_for_receipt,
    verify,
)

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
    "sealed_header",
    "signature_parts",
    "signer_for_receipt",
    "verify",
]
