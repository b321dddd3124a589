"""Keys and certificate files: generate, save (encrypted at rest), load, fingerprint.

Private keys are PKCS#8 PEM, encrypted with the best scheme cryptography offers when a
passphrase is given, and always written with mode 0600. Loading converts every parse failure
into an :class:`~exchange_common.errors.InputError` or :class:`~exchange_common.errors.CAError` with a clear message.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from exchange_common.errors import CAError, InputError
from exchange_common.fs import atomic_write

__all__ = [
    "KEY_PASSPHRASE_ENV",
    "KeyType",
    "PrivateKey",
    "PublicKey",
    "certificate_pem",
    "fingerprint",
    "generate_private_key",
    "load_certificate",
    "load_certificates",
    "load_private_key",
    "private_key_pem",
    "write_private_key",
]

#: Environment variable read for encrypted department/node keys (not the CA key).
KEY_PASSPHRASE_ENV = "EXCHANGE_KEY_PASSPHRASE"  # noqa: S105 - a variable name, not a secret

PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey: TypeAlias = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


class KeyType(StrEnum):
    """Key algorithms the CA issues for. EC P-256 is the default; RSA-3072 on request."""

    EC = "ec"
    RSA = "rsa"


def generate_private_key(key_type: KeyType = KeyType.EC) -> PrivateKey:
    """Return a fresh EC P-256 or RSA-3072 private key."""
    if key_type is KeyType.RSA:
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: PrivateKey, passphrase: bytes | None) -> bytes:
    """Serialize ``key`` as PKCS#8 PEM, encrypted when ``passphrase`` is given."""
    encryption: serialization.KeySerializationEncryption
    if passphrase:
        encryption = serialization.BestAvailableEncryption(passphrase)
    else:
        encryption = serialization.NoEncryption()
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def write_private_key(path: Path, key: PrivateKey, passphrase: bytes | None) -> None:
    """Write ``key`` atomically with mode 0600; refuses to overwrite an existing file."""
    try:
        atomic_write(path, private_key_pem(key, passphrase), mode=0o600, exclusive=True)
    except FileExistsError as e:
        raise InputError(f"refusing to overwrite existing key file {path}", code="E_EXISTS") from e


def load_private_key(
    path: Path, passphrase: bytes | None = None, *, passphrase_env: str = KEY_PASSPHRASE_ENV
) -> PrivateKey:
    """Load a PEM private key from ``path``.

    An unencrypted key loads without a passphrase. For an encrypted key the passphrase is
    ``passphrase`` if given, else the environment variable ``passphrase_env``. Raises
    :class:`InputError` for a missing or unreadable file and :class:`CAError` ``E_PASSPHRASE``
    for a missing or wrong passphrase.
    """
    data = _read(path, "private key")
    if passphrase is None:
        env = os.environ.get(passphrase_env)
        passphrase = env.encode() if env else None
    encrypted = b"ENCRYPTED" in data.split(b"\n", 1)[0] or b"Proc-Type: 4,ENCRYPTED" in data
    if encrypted and not passphrase:
        raise CAError(f"private key {path} is encrypted: set {passphrase_env}", code="E_PASSPHRASE")
    try:
        key = serialization.load_pem_private_key(data, password=passphrase if encrypted else None)
    except (ValueError, TypeError) as e:
        if encrypted:
            raise CAError(
                f"cannot decrypt private key {path}: wrong passphrase", code="E_PASSPHRASE"
            ) from e
        raise InputError(f"{path} is not a PEM private key", code="E_KEY_FORMAT") from e
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise InputError(f"{path}: only EC and RSA keys are supported", code="E_KEY_FORMAT")
    return key


def load_certificates(path: Path) -> list[x509.Certificate]:
    """Load one or more PEM certificates (a chain file) from ``path``; at least one."""
    data = _read(path, "certificate")
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        try:
            certs = [x509.load_der_x509_certificate(data)]
        except ValueError as e:
            raise InputError(f"{path} is not a PEM or DER certificate", code="E_CERT_FORMAT") from e
    return certs


def load_certificate(path: Path) -> x509.Certificate:
    """Load exactly the first certificate of ``path`` (the leaf of a chain file)."""
    return load_certificates(path)[0]


def certificate_pem(certs: x509.Certificate | Sequence[x509.Certificate]) -> bytes:
    """PEM text of one certificate or a chain, leaf first."""
    if isinstance(certs, x509.Certificate):
        certs = [certs]
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def fingerprint(cert: x509.Certificate) -> str:
    """Lower-case hex SHA-256 of the certificate's DER encoding."""
    return cert.fingerprint(hashes.SHA256()).hex()


def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError as e:
        raise InputError(f"{what} file not found: {path}", code="E_NOT_FOUND") from e
    except OSError as e:
        raise InputError(f"cannot read {what} file {path}: {e.strerror}", code="E_IO") from e
