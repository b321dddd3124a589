"""One error hierarchy for the whole product.

Every failure the product reports on purpose is an :class:`ExchangeError` with a stable
``code`` (``E_...``) and a one-line human message. The CLIs catch only this class and print
``error: <message> (<code>)``; anything else is a bug and keeps its traceback.

The split follows who is at fault, because the reaction differs:

- :class:`PeerError`: data that came from someone else is bad (a certificate, a bundle).
  A peer is told only the code; the precise cause (``detail``) goes to the local log.
- :class:`InputError`: the local operator gave bad input (a malformed CIDR, a missing file).
- :class:`CAError`: the certificate authority's own state forbids the operation
  (duplicate department, unknown serial, wrong passphrase, damaged database).
- :class:`TransportError` and :class:`StoreError`: network and database failures.

Third-party exceptions are converted at the boundary with ``raise ... from e``.
"""

from __future__ import annotations

__all__ = [
    "CAError",
    "CertificateError",
    "ExchangeError",
    "InputError",
    "PeerError",
    "StoreError",
    "TransportError",
]


class ExchangeError(Exception):
    """Base of every deliberate failure. ``code`` is stable and safe to show a peer."""

    code: str = "E_INTERNAL"
    #: Process exit code the CLIs use for this class of error.
    exit_code: int = 1

    def __init__(self, message: str, *, code: str | None = None, detail: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        #: Precise cause for the local log; never sent to a peer.
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.message} ({self.code})"

    def diagnostics(self) -> str:
        """Full text for the local operator: message, code and the precise cause if known."""
        text = str(self)
        if self.detail:
            text += f"\n  cause: {self.detail}"
        return text


class PeerError(ExchangeError):
    """Data from another party is unacceptable (certificate, bundle, request)."""

    code = "E_PEER"
    exit_code = 1


class CertificateError(PeerError):
    """A certificate (chain) failed verification.

    Codes: ``E_CERT_FORMAT``, ``E_CHAIN``, ``E_EXPIRED``, ``E_NOT_YET_VALID``, ``E_REVOKED``,
    ``E_KEY_USAGE``, ``E_IDENTITY``, ``E_CRL_MISSING``, ``E_CRL_STALE``, ``E_CRL_INVALID``,
    ``E_TRUST``.
    """

    code = "E_CHAIN"


class InputError(ExchangeError):
    """The local user's input is malformed or missing."""

    code = "E_INPUT"
    exit_code = 3


class CAError(ExchangeError):
    """The CA's state forbids the operation, or the CA directory is damaged."""

    code = "E_CA"
    exit_code = 4


class TransportError(ExchangeError):
    """The network or the remote end failed (connection refused, timeout, host key changed)."""

    code = "E_TRANSPORT"
    exit_code = 5


class StoreError(ExchangeError):
    """The state store failed or holds inconsistent data."""

    code = "E_STORE"
    exit_code = 6
