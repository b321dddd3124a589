"""Certificate verification used by the whole product: chain, validity, usage, revocation.

:func:`verify_certificate` takes values (certificates, a trust store, CRLs, ``now``) and returns
the holder's :class:`~pki.identity.CertifiedIdentity` or raises
:class:`~exchange_common.errors.CertificateError` with one of these codes:

===================  ===========================================================
``E_NOT_YET_VALID``  a certificate in the chain starts after ``now``
``E_EXPIRED``        a certificate in the chain ended before ``now``
``E_KEY_USAGE``      key usage / extended key usage unfit for the requested role
``E_CHAIN``          no valid path to a trusted root (other CA, bad signature, ...)
``E_CRL_MISSING``    no CRL from an issuer in the chain (fail closed)
``E_CRL_STALE``      that CRL is past its nextUpdate (or not yet valid)
``E_CRL_INVALID``    a CRL claims an issuer in the chain but its signature is wrong
``E_REVOKED``        a certificate in the chain is listed on its issuer's CRL
``E_IDENTITY``       the certificate does not carry an exchange identity
``E_TRUST``          the trust store is empty
===================  ===========================================================

Order of checks: validity and usage first (cheap, precise messages), then the path, then
revocation of every non-root certificate on the verified path.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID

from exchange_common.errors import CertificateError, InputError
from pki.identity import (
    OID_SECURE_SHELL_CLIENT,
    OID_SECURE_SHELL_SERVER,
    CertifiedIdentity,
    Role,
    identity_from_certificate,
    subject_text,
)
from pki.keys import fingerprint, load_certificates

__all__ = [
    "Revocation",
    "TrustStore",
    "current_crl",
    "load_crls",
    "newest_crl",
    "revocation_in",
    "verify_certificate",
]


@dataclass(frozen=True)
class TrustStore:
    """What a relying party trusts: root certificates, known intermediates and current CRLs."""

    roots: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...] = ()
    crls: tuple[x509.CertificateRevocationList, ...] = ()

    @classmethod
    def from_files(
        cls, trust: Path, crl: Path | None = None, intermediates: Path | None = None
    ) -> TrustStore:
        """Load roots (and optional intermediates and CRLs) from PEM files.

        A trust file may hold several certificates: self-signed ones become roots, the others
        are treated as intermediates (so ``root.pem`` + ``intermediate.pem`` concatenated works).
        """
        roots: list[x509.Certificate] = []
        inter: list[x509.Certificate] = []
        for cert in load_certificates(trust):
            (roots if cert.issuer == cert.subject else inter).append(cert)
        if intermediates is not None:
            inter.extend(load_certificates(intermediates))
        crls = load_crls(crl) if crl is not None else []
        return cls(tuple(roots), tuple(inter), tuple(crls))

    def with_crls(self, crls: Sequence[x509.CertificateRevocationList]) -> TrustStore:
        """A copy of this store with ``crls`` replacing the current ones."""
        return replace(self, crls=tuple(crls))


def load_crls(path: Path) -> list[x509.CertificateRevocationList]:
    """Load every CRL from a PEM file (or a single DER CRL); raises ``InputError`` if none."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise InputError(f"cannot read CRL file {path}: {e.strerror}", code="E_NOT_FOUND") from e
    crls: list[x509.CertificateRevocationList] = []
    marker = b"-----BEGIN X509 CRL-----"
    if marker in data:
        for chunk in data.split(marker)[1:]:
            try:
                crls.append(x509.load_pem_x509_crl(marker + chunk))
            except ValueError as e:
                raise InputError(f"{path} holds a malformed CRL", code="E_CRL_FORMAT") from e
    else:
        try:
            crls.append(x509.load_der_x509_crl(data))
        except ValueError as e:
            raise InputError(f"{path} is not a PEM or DER CRL", code="E_CRL_FORMAT") from e
    return crls


def _check_times(cert: x509.Certificate, now: dt.datetime, what: str) -> None:
    if now < cert.not_valid_before_utc:
        raise CertificateError(
            f"{what} certificate is not valid yet",
            code="E_NOT_YET_VALID",
            detail=f"{subject_text(cert.subject)} valid from {cert.not_valid_before_utc}",
        )
    if now > cert.not_valid_after_utc:
        raise CertificateError(
            f"{what} certificate has expired",
            code="E_EXPIRED",
            detail=f"{subject_text(cert.subject)} expired {cert.not_valid_after_utc}",
        )


def _check_usage(cert: x509.Certificate, role: Role) -> None:
    def bad(why: str) -> CertificateError:
        return CertificateError(
            "certificate is not fit for exchange use (key usage)",
            code="E_KEY_USAGE",
            detail=f"{subject_text(cert.subject)}: {why}",
        )

    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound as e:
        raise bad("no keyUsage extension") from e
    if not ku.digital_signature:
        raise bad("keyUsage lacks digitalSignature")
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        if bc.ca:
            raise bad("a CA certificate cannot act as a department or node")
    except x509.ExtensionNotFound:
        pass
    try:
        eku = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound as e:
        raise bad("no extendedKeyUsage extension") from e
    needed = {ExtendedKeyUsageOID.CLIENT_AUTH, OID_SECURE_SHELL_CLIENT}
    if role is Role.NODE:
        needed |= {ExtendedKeyUsageOID.SERVER_AUTH, OID_SECURE_SHELL_SERVER}
    missing = needed - eku
    if missing:
        raise bad("extendedKeyUsage lacks " + ", ".join(sorted(o.dotted_string for o in missing)))


def _ca_validity_error(
    leaf: x509.Certificate, cas: Sequence[x509.Certificate], now: dt.datetime
) -> CertificateError | None:
    """The validity failure of a CA certificate above ``leaf`` (walking issuer names), if any."""
    name = leaf.issuer
    for _ in range(len(cas) + 1):
        above = [c for c in cas if c.subject == name]
        for cert in above:
            try:
                _check_times(cert, now, "a CA")
            except CertificateError as e:
                return e
        if not above:
            return None
        name = above[0].issuer
    return None


#: CRL signatures already checked, by (CRL digest, issuer digest): a node checks every
#: bundle against the same CRL, and a signature over fixed bytes by a fixed key does not change.
_CRL_SIGNATURES: dict[tuple[bytes, bytes], bool] = {}
_CRL_SIGNATURES_KEPT = 64
_CRL_SIGNATURES_LOCK = threading.Lock()


def _crl_signed_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    memo = (crl.fingerprint(hashes.SHA256()), issuer.fingerprint(hashes.SHA256()))
    known = _CRL_SIGNATURES.get(memo)
    if known is not None:
        return known
    key = issuer.public_key()
    valid = isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey) and (
        crl.is_signature_valid(key)
    )
    with _CRL_SIGNATURES_LOCK:
        while len(_CRL_SIGNATURES) >= _CRL_SIGNATURES_KEPT:
            del _CRL_SIGNATURES[next(iter(_CRL_SIGNATURES))]
        _CRL_SIGNATURES[memo] = valid
    return valid


def _crl_number(crl: x509.CertificateRevocationList) -> int:
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return -1


def newest_crl(
    issuer: x509.Certificate, crls: Sequence[x509.CertificateRevocationList]
) -> x509.CertificateRevocationList:
    """``issuer``'s newest CRL among ``crls`` (by CRL number) whose signature verifies, current
    or not: what it lists stays revoked (revocation is final) even once it is out of date.

    Raises CertificateError ``E_CRL_MISSING`` (none from that issuer) or ``E_CRL_INVALID``
    (none signed by it).
    """
    candidates = [c for c in crls if c.issuer == issuer.subject]
    if not candidates:
        raise CertificateError(
            "no CRL available for the certificate's issuer",
            code="E_CRL_MISSING",
            detail=f"need a CRL from {subject_text(issuer.subject)}",
        )
    valid = [c for c in candidates if _crl_signed_by(c, issuer)]
    if not valid:
        raise CertificateError(
            "CRL signature is invalid",
            code="E_CRL_INVALID",
            detail=f"CRL claiming issuer {subject_text(issuer.subject)} is not signed by it",
        )
    return max(valid, key=_crl_number)


def current_crl(
    issuer: x509.Certificate,
    crls: Sequence[x509.CertificateRevocationList],
    now: dt.datetime,
) -> x509.CertificateRevocationList:
    """``issuer``'s newest CRL among ``crls`` (by CRL number), valid at ``now``.

    Raises CertificateError ``E_CRL_MISSING`` (none from that issuer), ``E_CRL_INVALID`` (none
    signed by it) or ``E_CRL_STALE`` (past its nextUpdate, or not yet valid).
    """
    crl = newest_crl(issuer, crls)
    next_update = crl.next_update_utc
    if next_update is None or now > next_update or now < crl.last_update_utc:
        raise CertificateError(
            "CRL is out of date: fetch a fresh CRL",
            code="E_CRL_STALE",
            detail=f"CRL {_crl_number(crl)} valid {crl.last_update_utc} .. {next_update}, now {now}",
        )
    return crl


@dataclass(frozen=True)
class Revocation:
    """A CRL's entry for a certificate: when and why it was revoked."""

    at: dt.datetime
    reason: str  # RFC 5280 name, ``unspecified`` when the CRL gives none


def revocation_in(crl: x509.CertificateRevocationList, serial: int) -> Revocation | None:
    """The entry of ``crl`` for certificate ``serial``, or None when it does not list it."""
    entry = crl.get_revoked_certificate_by_serial_number(serial)
    if entry is None:
        return None
    reason = "unspecified"
    with contextlib.suppress(x509.ExtensionNotFound):
        reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
    return Revocation(entry.revocation_date_utc, reason)


def _check_revocation(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    crls: Sequence[x509.CertificateRevocationList],
    now: dt.datetime,
) -> None:
    revoked = revocation_in(current_crl(issuer, crls, now), cert.serial_number)
    if revoked is not None:
        raise CertificateError(
            "certificate has been revoked",
            code="E_REVOKED",
            detail=f"serial {cert.serial_number:X} revoked {revoked.at} ({revoked.reason})",
        )


def verify_certificate(
    leaf: x509.Certificate,
    trust: TrustStore,
    *,
    now: dt.datetime,
    chain: Sequence[x509.Certificate] = (),
    role: Role | None = Role.DEPARTMENT,
    require_crl: bool = True,
) -> CertifiedIdentity:
    """Verify ``leaf`` (with untrusted ``chain`` certificates) at time ``now``.

    ``role`` is the role the caller needs: a department certificate cannot pass as a node and
    vice versa (``None`` accepts either, for auditors). ``require_crl=False`` skips revocation
    and exists only for the CA operator's own inspection tools; every product path fails closed.
    Returns the identity with the verified chain (leaf first, root last). A certificate that
    cryptography cannot parse fully (duplicate extensions, malformed names) is ``E_CERT_FORMAT``.
    """
    try:
        return _verify_certificate(leaf, trust, now, chain, role, require_crl)
    except CertificateError:
        raise
    except (ValueError, TypeError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as e:
        raise CertificateError(
            "certificate is malformed", code="E_CERT_FORMAT", detail=f"{type(e).__name__}: {e}"
        ) from e


def _verify_certificate(
    leaf: x509.Certificate,
    trust: TrustStore,
    now: dt.datetime,
    chain: Sequence[x509.Certificate],
    role: Role | None,
    require_crl: bool,
) -> CertifiedIdentity:
    if not trust.roots:
        raise CertificateError("trust store is empty: configure the ministry root", code="E_TRUST")
    _check_times(leaf, now, "the")
    identity = identity_from_certificate(leaf, fingerprint(leaf))
    if role is not None and identity.role is not role:
        raise CertificateError(
            f"certificate is a {identity.role.value} certificate, not a {role.value} certificate",
            code="E_KEY_USAGE",
        )
    _check_usage(leaf, identity.role)
    intermediates = [*chain, *trust.intermediates]
    try:
        verifier = (
            verification.PolicyBuilder()
            .store(verification.Store(list(trust.roots)))
            .time(now)
            .build_client_verifier()
        )
        verified = verifier.verify(leaf, intermediates)
    except verification.VerificationError as e:
        text = str(e)
        if "not valid at validation time" in text:
            # The verifier does not say which CA certificate or in which direction: find it,
            # so a not-yet-valid intermediate is not reported as expired.
            found = _ca_validity_error(leaf, [*intermediates, *trust.roots], now)
            if found is not None:
                found.detail = f"{found.detail}; {text}"
                raise found from e
            raise CertificateError(
                "a CA certificate in the chain has expired", code="E_EXPIRED", detail=text
            ) from e
        raise CertificateError(
            "certificate does not chain to the trusted ministry root", code="E_CHAIN", detail=text
        ) from e
    path = list(verified.chain)
    if require_crl:
        for cert, issuer in itertools.pairwise(path):
            _check_revocation(cert, issuer, trust.crls, now)
    return replace(identity, chain=tuple(path))
