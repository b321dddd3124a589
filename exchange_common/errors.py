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

Every code is registered in :mod:`exchange_common.codes` with its category, a text safe for
peers and a hint for the operator (:attr:`ExchangeError.registry_entry`). An unregistered code
is still accepted at run time (a node must not crash over a missing text); a test keeps the
registry complete.
"""

from __future__ import annotations

from exchange_common.codes import GENERIC_PEER_TEXT, Reason, lookup

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
        # A message that already ends with its code (IdNumberError's) is not suffixed twice.
        suffix = f"({self.code})"
        return self.message if self.message.endswith(suffix) else f"{self.message} {suffix}"

    @property
    def registry_entry(self) -> Reason | None:
        """The registry entry of :attr:`code`, or ``None`` for an unregistered code."""
        return lookup(self.code)

    @property
    def peer_text(self) -> str:
        """The registry's text for :attr:`code`, safe to send to a peer (a generic sentence
        for an unregistered code). Never includes :attr:`message` or :attr:`detail`."""
        entry = lookup(self.code)
        return entry.peer_text if entry is not None else GENERIC_PEER_TEXT

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
