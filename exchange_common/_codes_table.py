"""The data behind :mod:`exchange_common.codes`: one row per reason code.

Each row is ``(code, category, peer text, operator hint)``. The category is one of the values
of :class:`exchange_common.codes.Category`; it decides the exit code. The category follows
the error class the code is raised with (so the exit code in the registry is the one the CLIs
return); the codes raised with more than one class are listed in :data:`MIXED_CLASSES`.

Peer texts are sent to other parties: one short sentence, never personal data, never a path,
a serial, a limit or any other internal. Operator hints say what to check or do.

Edit this table, then regenerate ``docs/reason-codes.md``::

    python -m exchange_common.codes --markdown > docs/reason-codes.md
"""

from __future__ import annotations

from exchange_common import _codes_local, _codes_peer

__all__ = ["MIXED_CLASSES", "TABLE"]

TABLE: tuple[tuple[str, str, str, str], ...] = _codes_peer.ROWS + _codes_local.ROWS

#: Codes raised with error classes of different exit codes. The registry names the usual
#: class's exit code; the CLI exits with the class actually raised. Value: why.
MIXED_CLASSES: dict[str, str] = {
    "E_CERT_FORMAT": "a certificate file the operator gives is an InputError (exit 3)",
    "E_DUPLICATE": "a live certificate in the CA is a CAError (exit 4)",
    "E_FORMAT": "a local table or dataset file of the wrong type is an InputError (exit 3)",
    "E_HOST_KEY": "an unloadable host key on the node is an InputError (exit 3)",
    "E_IDENTITY": "a certificate of the wrong department given locally is an InputError (exit 3)",
    "E_ITEM": "an unknown item asked of the node's engine locally is an InputError (exit 3)",
    "E_LIMIT": "sealing over a limit locally is an InputError (exit 3)",
    "E_NOT_FOUND": "a department without a live certificate in the CA is a CAError (exit 4)",
    "E_PASSPHRASE": "no CA passphrase, or a mismatched confirmation, is an InputError (exit 3)",
    "E_SCHEMA": "the formal review of a query refuses a bundle with it (peer)",
    "E_TIME_RANGE": "the formal review of a query refuses a bundle with it (peer)",
    "E_TRUST": "an empty trust store met while verifying a certificate is a CertificateError "
    "(exit 1)",
    "E_ENGINE": "raised as InputError (exit 3), though the cause is the node's engine",
    "E_UNKNOWN_RESOURCE": "the client refuses a push for a resource its catalog lacks as an "
    "InputError (exit 3) before sealing",
}
