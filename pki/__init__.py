"""Cryptography and trust for the social-assistance data exchange.

Public API: the CA (:mod:`pki.ca`), certificate verification (:mod:`pki.verify`), identities
(:mod:`pki.identity`), key files (:mod:`pki.keys`) and the error hierarchy (:mod:`exchange_common.errors`).
Modules whose names start with ``_`` are internal.
"""

from exchange_common.errors import (
    CAError,
    CertificateError,
    ExchangeError,
    InputError,
    PeerError,
    StoreError,
    TransportError,
)
from pki.ca import CertificateAuthority, IssuedCertificate
from pki.identity import CertifiedIdentity, DeptCode, Role
from pki.verify import TrustStore, verify_certificate

__all__ = [
    "CAError",
    "CertificateAuthority",
    "CertificateError",
    "CertifiedIdentity",
    "DeptCode",
    "ExchangeError",
    "InputError",
    "IssuedCertificate",
    "PeerError",
    "Role",
    "StoreError",
    "TransportError",
    "TrustStore",
    "verify_certificate",
]
