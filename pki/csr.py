"""Key pairs and certificate signing requests for parties that keep their key at home.

A department or node that should never hand its private key to anyone makes its key pair here
and sends only the CSR to the ministry operator, who issues with ``exchange-pki issue --csr``.
The CA takes code, name and networks from its own records, not from the CSR; the CSR's subject
only helps the operator see whose request it is.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from exchange_common.errors import InputError
from exchange_common.fs import atomic_write
from pki.identity import DeptCode
from pki.keys import KeyType, generate_private_key, write_private_key

__all__ = ["write_key_and_csr"]


def write_key_and_csr(
    key_path: Path,
    csr_path: Path,
    code: DeptCode,
    name: str | None = None,
    *,
    key_type: KeyType = KeyType.EC,
    passphrase: bytes | None = None,
) -> x509.CertificateSigningRequest:
    """Generate a key pair, write the key (0600, encrypted with ``passphrase`` if given) and
    the PEM CSR; refuse to overwrite either file (``E_EXISTS``)."""
    for path in (key_path, csr_path):
        if path.exists():
            raise InputError(f"refusing to overwrite {path}", code="E_EXISTS")
    key = generate_private_key(key_type)
    attrs = [x509.NameAttribute(NameOID.SERIAL_NUMBER, code)]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, (name or code).strip()[:64] or code))
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name(attrs))
        .sign(key, hashes.SHA256())
    )
    write_private_key(key_path, key, passphrase)
    atomic_write(csr_path, csr.public_bytes(serialization.Encoding.PEM), 0o644, exclusive=True)
    return csr
