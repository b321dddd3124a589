"""Loading and checking what the client signs, decrypts and trusts with.

Everything here fails closed: no CRL means nothing verifies, an expired own certificate means
nothing is sealed (the node would reject the bundle anyway, after the upload), and a node
certificate whose fingerprint differs from the pinned one is refused before anything is
sealed for it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from exchange_client.config import ClientConfig
from exchange_common.errors import CertificateError, InputError
from pki.identity import CertifiedIdentity, Role
from pki.keys import PrivateKey, fingerprint, load_certificates, load_private_key
from pki.verify import TrustStore, verify_certificate

__all__ = [
    "Credentials",
    "check_node_certificate",
    "check_own_certificate",
    "key_matches",
    "load_credentials",
    "trust_store",
]


@dataclass(frozen=True)
class Credentials:
    """The department's key and chain, the pinned node certificate and the trust store."""

    key: PrivateKey
    chain: tuple[x509.Certificate, ...]
    node_chain: tuple[x509.Certificate, ...]
    trust: TrustStore

    @property
    def cert(self) -> x509.Certificate:
        """The department's own certificate (the chain's leaf)."""
        return self.chain[0]

    @property
    def node_cert(self) -> x509.Certificate:
        """The node's certificate."""
        return self.node_chain[0]


def key_matches(key: PrivateKey, cert: x509.Certificate) -> bool:
    """True when ``key`` is the private half of ``cert``'s public key."""
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return key.public_key().public_bytes(der, fmt) == cert.public_key().public_bytes(der, fmt)


def trust_store(cfg: ClientConfig) -> TrustStore:
    """The configured roots and CRL (``crl.pem`` beside the trust file when none is set)."""
    return TrustStore.from_files(cfg.trust, cfg.effective_crl())


def load_credentials(cfg: ClientConfig) -> Credentials:
    """Load key, own chain, node chain and trust; checks the key and the node pin (not times)."""
    if cfg.cert is None:
        raise InputError(
            "this department has no certificate yet: send the CSR to the ministry, then run "
            "`exchange-client init --dir DIR --import-cert DEPT.pem`",
            code="E_NO_CERT",
        )
    chain = tuple(load_certificates(cfg.cert))
    key = load_private_key(cfg.key)
    if not key_matches(key, chain[0]):
        raise InputError(
            f"the key {cfg.key} does not belong to the certificate {cfg.cert}",
            code="E_KEY_MISMATCH",
        )
    node_chain = tuple(load_certificates(cfg.node_cert))
    if fingerprint(node_chain[0]) != cfg.node_fingerprint:
        raise InputError(
            f"the node certificate {cfg.node_cert} is not the pinned one (SHA-256 "
            f"{cfg.node_fingerprint[:16]}…): re-run init with the right --node-cert",
            code="E_NODE_PIN",
        )
    return Credentials(key, chain, node_chain, trust_store(cfg))


def check_own_certificate(
    creds: Credentials, cfg: ClientConfig, now: dt.datetime
) -> CertifiedIdentity:
    """Verify the department's own certificate now (chain, validity, CRL, code).

    Raises :class:`CertificateError` with a message that says it is *our* certificate, so an
    operator does not go looking for a problem at the node.
    """
    try:
        ident = verify_certificate(
            creds.cert, creds.trust, now=now, chain=creds.chain[1:], role=Role.DEPARTMENT
        )
    except CertificateError as e:
        hint = {
            "E_EXPIRED": "ask the ministry for a renewed certificate",
            "E_REVOKED": "ask the ministry for a new certificate",
            "E_CRL_MISSING": "install the current CRL (see --crl)",
            "E_CRL_STALE": "install the current CRL",
        }.get(e.code, "check the certificate with `exchange-pki verify`")
        raise CertificateError(
            f"refusing to push: your department certificate cannot be used ({e.message}); {hint}",
            code=e.code,
            detail=e.detail,
        ) from e
    if ident.code != cfg.dept:
        raise InputError(
            f"the certificate belongs to {ident.code}, not to {cfg.dept}", code="E_IDENTITY"
        )
    return ident


def check_node_certificate(creds: Credentials, now: dt.datetime) -> CertifiedIdentity:
    """Verify the pinned node certificate now (a revoked node gets nothing sealed for it)."""
    try:
        return verify_certificate(
            creds.node_cert, creds.trust, now=now, chain=creds.node_chain[1:], role=Role.NODE
        )
    except CertificateError as e:
        raise CertificateError(
            f"the node certificate cannot be used ({e.message})", code=e.code, detail=e.detail
        ) from e
