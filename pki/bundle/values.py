"""The values the bundle API takes and returns: :class:`Member` (a file to seal) and the results
:class:`SealResult`, :class:`VerifiedBundle` and :class:`OpenedBundle`.

Frozen dataclasses with no behaviour beyond convenience properties; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from pki._bundle_format import BundleId
from pki._bundle_header import BundleHeader
from pki._bundle_manifest import Manifest
from pki.identity import CertifiedIdentity


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
