"""Checking what an operator hands the CA: revocation reasons, certificate serials, CSRs.

Pure functions over text and bytes; each returns a normalised value or raises
:class:`~exchange_common.errors.InputError` with a stable code (``E_REASON``, ``E_SERIAL``,
``E_CSR``). A CSR is accepted only with a valid self-signature and a key the policy allows
(EC P-256/P-384 or RSA of at least 2048 bits).
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from exchange_common.errors import InputError
from pki.identity import CertSerial, serial_hex

__all__ = [
    "REVOCATION_REASONS",
    "parse_csr",
    "parse_reason",
    "parse_serial",
]


#: Revocation reasons an operator may give (RFC 5280 names; certificateHold is not offered
#: because a hold can be lifted and the policy wants revocation to be final).
REVOCATION_REASONS: dict[str, x509.ReasonFlags] = {
    f.value: f
    for f in (
        x509.ReasonFlags.unspecified,
        x509.ReasonFlags.key_compromise,
        x509.ReasonFlags.affiliation_changed,
        x509.ReasonFlags.superseded,
        x509.ReasonFlags.cessation_of_operation,
        x509.ReasonFlags.privilege_withdrawn,
    )
}


def parse_reason(text: str) -> x509.ReasonFlags:
    """Accept ``keyCompromise``, ``key-compromise`` or ``key_compromise`` (case-insensitive)."""
    wanted = text.replace("-", "").replace("_", "").lower()
    for name, flag in REVOCATION_REASONS.items():
        if name.lower() == wanted:
            return flag
    raise InputError(
        f"unknown revocation reason {text!r}; choose one of: {', '.join(REVOCATION_REASONS)}",
        code="E_REASON",
    )


def parse_serial(text: str) -> CertSerial:
    """Normalise a serial given as hex (``0A:1B``, ``0x0a1b``, ``0A1B``) to canonical hex."""
    cleaned = text.strip().replace(":", "").lower().removeprefix("0x")
    try:
        value = int(cleaned, 16)
    except ValueError as e:
        raise InputError(
            f"invalid certificate serial {text!r}: expected hex", code="E_SERIAL"
        ) from e
    return serial_hex(value)


def parse_csr(data: bytes) -> x509.CertificateSigningRequest:
    """Parse a PEM or DER CSR and check its self-signature and key; raise ``E_CSR`` if bad."""
    try:
        csr = x509.load_pem_x509_csr(data)
    except ValueError:
        try:
            csr = x509.load_der_x509_csr(data)
        except ValueError as e:
            raise InputError("malformed certificate signing request", code="E_CSR") from e
    try:
        valid = csr.is_signature_valid
    except Exception as e:  # unsupported signature algorithm raises from the Rust layer
        raise InputError(f"CSR signature cannot be checked: {e}", code="E_CSR") from e
    if not valid:
        raise InputError("CSR self-signature is invalid (tampered or mismatched key)", code="E_CSR")
    key = csr.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1 | ec.SECP384R1):
            raise InputError(f"CSR uses unsupported curve {key.curve.name}", code="E_CSR")
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise InputError(f"CSR RSA key too small ({key.key_size} bits)", code="E_CSR")
    else:
        raise InputError("CSR key must be EC (P-256/P-384) or RSA", code="E_CSR")
    return csr
