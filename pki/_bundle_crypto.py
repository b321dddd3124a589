"""Bundle format v1 cryptography: signatures over the signed region, content-key wrapping.

Signatures: ECDSA P-256 with SHA-256 (DER signature) or RSA-PSS (MGF1-SHA-256, 32-byte salt)
with SHA-256, computed over the SHA-256 digest of bytes ``[0, signed_length)`` so that
``openssl dgst -sha256 -verify`` checks them unchanged.

Key wrapping of the 16-byte content key, per recipient:

- EC P-256 certificate: a fresh ephemeral P-256 key; ``KEK = HKDF-SHA256(ECDH(eph, R),
  salt = epk || R_uncompressed, info = "sa-exchange-bundle/1 key-wrap " || bundle_id(16 bytes),
  L = 32)``; ``wrapped = AES-KW(KEK, content_key)`` (RFC 3394).
- RSA certificate: ``RSA-OAEP(MGF1-SHA-256, SHA-256, no label)``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, keywrap, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from pki._bundle_format import KEY_ECDH_P256, KEY_RSA_OAEP, SIG_ECDSA_P256, SIG_RSA_PSS, reject
from pki._bundle_header import RecipientEntry
from pki.keys import PrivateKey, PublicKey, fingerprint

__all__ = [
    "CONTENT_KEY_LEN",
    "Rng",
    "check_key_pair",
    "digest_signature_ok",
    "key_alg_for",
    "sign_digest",
    "signature_alg_for",
    "unwrap_key",
    "verify_digest",
    "wrap_key",
]

Rng = Callable[[int], bytes]

CONTENT_KEY_LEN = 16
PSS_SALT_LEN = 32
MIN_RSA_BITS = 2048
KEY_WRAP_INFO = b"sa-exchange-bundle/1 key-wrap "
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def _pss() -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=PSS_SALT_LEN)


def _oaep() -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def signature_alg_for(key: object) -> str:
    """The header ``signature_alg`` for a public or private key; ``ValueError`` if unsupported."""
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError(f"EC curve {key.curve.name} is not supported (P-256 only)")
        return SIG_ECDSA_P256
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"RSA key of {key.key_size} bits is too small")
        return SIG_RSA_PSS
    raise ValueError("only EC P-256 and RSA keys are supported")


def key_alg_for(cert: x509.Certificate) -> str:
    """The ``key_alg`` used to wrap for ``cert``'s key; ``ValueError`` if unsupported."""
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError(f"EC curve {key.curve.name} is not supported (P-256 only)")
        return KEY_ECDH_P256
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"RSA key of {key.key_size} bits is too small")
        return KEY_RSA_OAEP
    raise ValueError("only EC P-256 and RSA certificates can receive bundles")


def check_key_pair(key: PrivateKey, cert: x509.Certificate) -> bool:
    """True when ``key`` is the private half of ``cert``'s public key."""
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    return key.public_key().public_bytes(enc, fmt) == cert.public_key().public_bytes(enc, fmt)


def sign_digest(key: PrivateKey, digest: bytes) -> bytes:
    """Sign a SHA-256 ``digest`` (ECDSA DER signature, or RSA-PSS with a 32-byte salt)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    return key.sign(digest, _pss(), Prehashed(hashes.SHA256()))


def verify_digest(cert: x509.Certificate, alg: str, signature: bytes, digest: bytes) -> None:
    """Check ``signature`` over ``digest`` with ``cert``'s key; raise ``BundleError``.

    ``E_ALGORITHM`` when ``alg`` does not fit the key type (a header cannot make an RSA key
    verify as ECDSA or the reverse), ``E_SIGNATURE`` when the signature is wrong.
    """
    try:
        key = cert.public_key()
        expected = signature_alg_for(key)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise reject("E_ALGORITHM", f"sender key: {e}") from None
    if expected != alg:
        raise reject("E_ALGORITHM", f"signature_alg {alg} does not fit the sender's key type")
    if not digest_signature_ok(key, signature, digest):  # type: ignore[arg-type]
        raise reject("E_SIGNATURE", "signature does not verify with the sender's key")


def digest_signature_ok(key: PublicKey, signature: bytes, digest: bytes) -> bool:
    """Whether ``signature`` is :func:`sign_digest`'s over the SHA-256 ``digest`` by ``key``
    (ECDSA, or RSA-PSS with a 32-byte salt); never raises for a wrong signature."""
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, digest, _pss(), Prehashed(hashes.SHA256()))
        else:  # pragma: no cover - PublicKey is EC or RSA
            return False
    except InvalidSignature:
        return False
    return True


def _ephemeral_key(rng: Rng) -> ec.EllipticCurvePrivateKey:
    # Derived from the injectable rng (rejection sampling, no modulo bias) so that tests can
    # make sealing reproducible; production passes os.urandom.
    while True:
        k = int.from_bytes(rng(32), "big")
        if 1 <= k < _P256_ORDER:
            return ec.derive_private_key(k, ec.SECP256R1())


def _uncompressed(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def _kek(shared: bytes, epk: bytes, recipient_pub: bytes, bundle_id: uuid.UUID) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=epk + recipient_pub,
        info=KEY_WRAP_INFO + bundle_id.bytes,
    ).derive(shared)


def wrap_key(
    cert: x509.Certificate, content_key: bytes, bundle_id: uuid.UUID, rng: Rng
) -> RecipientEntry:
    """Wrap ``content_key`` for the holder of ``cert``; ``ValueError`` for unsupported keys."""
    alg = key_alg_for(cert)
    key = cert.public_key()
    if alg == KEY_ECDH_P256:
        assert isinstance(key, ec.EllipticCurvePublicKey)
        eph = _ephemeral_key(rng)
        epk = _uncompressed(eph.public_key())
        kek = _kek(eph.exchange(ec.ECDH(), key), epk, _uncompressed(key), bundle_id)
        wrapped = keywrap.aes_key_wrap(kek, content_key)
        return RecipientEntry(fingerprint(cert), alg, wrapped, epk)
    assert isinstance(key, rsa.RSAPublicKey)
    return RecipientEntry(fingerprint(cert), alg, key.encrypt(content_key, _oaep()))


def unwrap_key(
    entry: RecipientEntry, key: PrivateKey, cert: x509.Certificate, bundle_id: uuid.UUID
) -> bytes:
    """Recover the content key from ``entry`` with the recipient's key; ``E_DECRYPT`` if not."""
    try:
        expected = key_alg_for(cert)
    except ValueError as e:
        raise reject("E_DECRYPT", f"recipient certificate unsupported: {e}") from None
    if entry.key_alg != expected:
        raise reject("E_DECRYPT", f"key_alg {entry.key_alg} does not fit the recipient's key")
    try:
        if isinstance(key, ec.EllipticCurvePrivateKey):
            if entry.epk is None:
                raise ValueError("no ephemeral key")
            peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), entry.epk)
            shared = key.exchange(ec.ECDH(), peer)
            kek = _kek(shared, entry.epk, _uncompressed(key.public_key()), bundle_id)
            content_key = keywrap.aes_key_unwrap(kek, entry.wrapped_key)
        else:
            content_key = key.decrypt(entry.wrapped_key, _oaep())
    except (ValueError, keywrap.InvalidUnwrap) as e:
        raise reject("E_DECRYPT", f"cannot unwrap the content key: {type(e).__name__}") from None
    if len(content_key) != CONTENT_KEY_LEN:
        raise reject("E_DECRYPT", f"content key has {len(content_key)} bytes, not 16")
    return content_key
