"""The login side of the SFTP front: asyncssh's per-connection callbacks and the refusal codes.

:class:`_LoginServer` asks :class:`~exchange_server.front.server.SFTPFront` for an
:class:`Admission` when a client begins to authenticate and offers only the credentials that
admission allows; a connection that asked to authenticate and ended without success counts as
one failed login. The ``E_...`` codes are stable: they appear in the log and the audit trail.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncssh

from exchange_common.errors import InputError
from exchange_common.net import normalise_address
from exchange_server.front.sftp_services import SessionInfo
from pki.identity import DeptCode, parse_dept_code

__all__ = [
    "Admission",
]

if TYPE_CHECKING:
    from exchange_server.front.server import SFTPFront

#: The login logger operators filter on (same name as the SFTP front's, as the guide documents).
log = logging.getLogger("exchange_server.front.sftp")


# Refusal reasons (stable codes, in the log and the audit trail).
E_UNKNOWN_ADDRESS = "E_UNKNOWN_ADDRESS"
E_BANNED = "E_BANNED"
E_BUSY = "E_BUSY"
E_SILENT = "E_SILENT"
E_AUTH_TRIES = "E_AUTH_TRIES"
E_UNKNOWN_USER = "E_UNKNOWN_USER"
E_DISABLED = "E_DISABLED"
E_ADDRESS = "E_ADDRESS"
E_CREDENTIALS = "E_CREDENTIALS"
E_UNAVAILABLE = "E_UNAVAILABLE"
_PRE_BANNER = frozenset({E_UNKNOWN_ADDRESS, E_BANNED, E_BUSY})


def _safe_user(user: str | None) -> str:
    """A user name fit for one log line (a peer chooses it: no newlines, bounded length)."""
    if user is None:
        return "-"
    try:
        return parse_dept_code(user)
    except InputError:
        return repr(user[:64])


@dataclass(frozen=True)
class Admission:
    """The outcome of the login checks for one (user, address): a refusal or the credentials."""

    dept: DeptCode | None
    refusal: str | None = None
    detail: str | None = None
    ssh_keys: tuple[tuple[str, Any], ...] = ()  # (fingerprint, asyncssh.SSHKey)
    x509_entry: str | None = None  # authorized_keys line for the registered certificate

    @classmethod
    def refuse(cls, reason: str, detail: str | None = None) -> Admission:
        return cls(dept=None, refusal=reason, detail=detail)


class _LoginServer(asyncssh.SSHServer):
    """asyncssh's per-connection callbacks: admission at begin_auth, bookkeeping after."""

    def __init__(self, front: SFTPFront):
        self._front = front
        self._conn: Any = None
        self._address = "?"
        self._user: str | None = None
        self._admission: Admission | None = None
        self._attempted = False
        self._reason: str | None = None
        self._key_fp: str | None = None
        self._refused_keys = 0
        self._silent: asyncio.TimerHandle | None = None
        self.session_info: SessionInfo | None = None

    def connection_made(self, conn: Any) -> None:
        self._conn = conn
        peer = conn.get_extra_info("peername")
        if peer:
            self._address = normalise_address(str(peer[0])) or str(peer[0])
        self._front.connection_opened(conn)
        # A connection that never asks to log in holds a slot for nothing: close it soon, and
        # count it as a failed login (repeated, the address is banned like a brute force).
        limits = self._front.node.config.limits
        self._silent = asyncio.get_running_loop().call_later(
            limits.handshake_timeout_seconds, self._handshake_expired
        )

    def _handshake_expired(self) -> None:
        self._silent = None
        if not self._attempted:
            self._attempted = True
            self._reason = E_SILENT
            self._conn.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._silent is not None:
            self._silent.cancel()
        self._front.connection_closed(self._conn)
        if self._attempted and self.session_info is None:
            self._front.login_failed(
                self._reason or E_CREDENTIALS,
                self._address,
                self._user,
                failures=max(1, self._refused_keys),
            )

    async def begin_auth(self, username: str) -> bool:
        # Called again if the client switches user names mid-connection; asyncssh resets the
        # authorized keys each time, so nothing admitted for one name carries over.
        if self._silent is not None:
            self._silent.cancel()
            self._silent = None
        self._attempted = True
        self._user = username
        self._admission = None
        self._key_fp = None
        admission = await self._front.admit_login(username, self._address)
        self._admission = admission
        if admission.refusal is not None:
            self._reason = admission.refusal
            if admission.detail:
                log.info(
                    "login check failed: reason=%s address=%s user=%s cause=%s",
                    admission.refusal,
                    self._address,
                    _safe_user(username),
                    admission.detail,
                )
        else:
            self._reason = E_CREDENTIALS
            if admission.x509_entry is not None:
                self._conn.set_authorized_keys(
                    asyncssh.import_authorized_keys(admission.x509_entry + "\n")
                )
        return True  # authentication is always required

    def public_key_auth_supported(self) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def host_based_auth_supported(self) -> bool:
        return False

    def validate_public_key(self, username: str, key: Any) -> bool:
        adm = self._admission
        if adm is None or adm.refusal is not None or username != adm.dept:
            return self._refuse_key()
        data = key.public_data
        for fp, registered in adm.ssh_keys:
            if registered.public_data == data:
                self._key_fp = fp
                return True
        return self._refuse_key()

    def _refuse_key(self) -> bool:
        """One more refused credential; past ``max_auth_tries`` the connection is closed
        (OpenSSH's MaxAuthTries: one connection cannot try a whole key ring)."""
        self._refused_keys += 1
        if self._refused_keys >= self._front.node.config.limits.max_auth_tries:
            self._reason = E_AUTH_TRIES
            self._conn.disconnect(
                asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE, "Too many authentication failures"
            )
        return False

    def validate_ca_key(self, username: str, key: Any) -> bool:
        return False  # OpenSSH user certificates are not a registered credential

    def auth_completed(self) -> None:
        adm = self._admission
        assert adm is not None and adm.dept is not None
        self.session_info = SessionInfo(dept=adm.dept, address=self._address)
        method = f"ssh-key {self._key_fp}" if self._key_fp else "x509"
        self._front.login_ok(adm.dept, self._address, method)
