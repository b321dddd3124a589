"""SFTP to the node over asyncssh (or paramiko): log in, pin the host key, upload, list, download.

The only module that talks to the network. Every asyncssh or socket failure is converted into
a :class:`~exchange_common.errors.TransportError` at this boundary, with a code that tells the retry
logic (:mod:`exchange_client.retry`) whether another attempt can help:

=====================  =========================================================  =========
``E_UNREACHABLE``      connection refused/reset, no route, name not resolved      retried
``E_TIMEOUT``          the node did not answer in time                            retried
``E_CONNECTION_LOST``  the connection dropped (before the banner or mid-transfer)  retried
``E_HOST_KEY``         the node's SSH host key differs from the pinned one        never
``E_LOGIN``            the node refused the login                                 never
``E_SFTP``             the node refused an SFTP request (quota, name, ...)        never
=====================  =========================================================  =========

A login refusal is not retried: every failed login counts toward the node's ban of the
address, and the node refuses for reasons (revoked, wrong address) that do not pass.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncssh

from exchange_client.config import ClientConfig
from exchange_client.hostkeys import (
    HostKeyDecision,
    add_pin,
    decide,
    host_key_changed,
    pinned_keys,
)
from exchange_client.retry import backoff_delays, retry_async
from exchange_common.errors import TransportError
from exchange_common.fs import atomic_write
from pki.keys import KEY_PASSPHRASE_ENV

__all__ = ["OutboxEntry", "Session", "run_with_node"]

T = TypeVar("T")
TransferProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class OutboxEntry:
    """A file the node offers in ``/outbox``."""

    name: str
    size: int


class _PinningClient(asyncssh.SSHClient):
    """Checks the node's host key against DIR/known_hosts (see :mod:`hostkeys`)."""

    def __init__(self, pinned: list[str]):
        self.pinned = pinned
        self.presented: str | None = None
        self.decision: HostKeyDecision | None = None

    def validate_host_public_key(self, host: str, addr: str, port: int, key: Any) -> bool:
        self.presented = key.export_public_key().decode().strip()
        self.decision = decide(self.pinned, self.presented)
        return self.decision is not HostKeyDecision.CHANGED


class Session:
    """An open SFTP session as the department. Obtain one through :func:`run_with_node`.

    ``abort`` drops the connection at once, sending nothing more (not even a close).
    """

    def __init__(self, sftp: Any, abort: Callable[[], None]):
        self._sftp = sftp
        self._abort = abort

    async def upload(self, local: Path, name: str, progress: TransferProgress | None) -> None:
        """Upload ``local`` as ``/inbox/<name>``; the node commits it when the file is closed.

        Cancelled (Ctrl-C), the upload ends with the file still open: the connection is
        dropped first, so the node sees its session end mid-upload and discards the bytes
        (asyncssh's ``put`` would close the file on the way out, and the node would take a
        truncated bundle for a whole one). Re-raises the :class:`asyncio.CancelledError`.
        """

        def handler(_src: bytes, _dst: bytes, done: int, total: int) -> None:
            if progress is not None:
                progress(done, total)

        put = asyncio.ensure_future(
            self._sftp.put(str(local), f"/inbox/{name}", progress_handler=handler)
        )
        try:
            # shielded: a cancel reaches this frame first, before put() could close the file
            await asyncio.shield(put)
        except asyncio.CancelledError:
            self._abort()
            # not cancelled: put() fails on the dropped connection and reaps its own tasks
            await asyncio.wait({put}, timeout=_ABORT_GRACE)
            if not put.done():
                put.cancel()
            elif not put.cancelled():
                put.exception()  # retrieved: the connection was dropped on purpose
            raise

    async def outbox(self) -> list[OutboxEntry]:
        """The regular files in ``/outbox``."""
        entries = await self._sftp.readdir("/outbox")
        out: list[OutboxEntry] = []
        for e in entries:
            name = e.filename if isinstance(e.filename, str) else e.filename.decode()
            if name in (".", ".."):
                continue
            out.append(OutboxEntry(name, int(e.attrs.size or 0)))
        return sorted(out, key=lambda x: x.name)

    async def download(self, name: str, local: Path) -> None:
        """Download ``/outbox/<name>`` into ``local`` (which must not exist)."""
        await self._sftp.get(f"/outbox/{name}", str(local))


def _client_keys(cfg: ClientConfig) -> list[Any]:
    if cfg.login == "ssh-key":
        assert cfg.ssh_key is not None
        return [str(cfg.ssh_key)]
    if cfg.cert is None:
        raise TransportError(
            "no department certificate yet: import it with `exchange-client init --import-cert`",
            code="E_LOGIN",
        )
    return [(str(cfg.key), str(cfg.cert))]


def _convert(e: BaseException, cfg: ClientConfig, client: _PinningClient | None) -> TransportError:
    where = f"{cfg.node_host}:{cfg.node_port}"
    if (
        client is not None
        and client.decision is HostKeyDecision.CHANGED
        and client.presented is not None
    ):
        return host_key_changed(
            cfg.node_host, cfg.node_port, client.presented, str(cfg.known_hosts)
        )
    if isinstance(e, asyncssh.PermissionDenied):
        return TransportError(
            f"the node at {where} refused the login of {cfg.dept} (permission denied); the node "
            "administrator sees the reason in the node's log",
            code="E_LOGIN",
        )
    if isinstance(e, asyncssh.HostKeyNotVerifiable):
        return TransportError(f"the node's host key could not be verified: {e}", code="E_HOST_KEY")
    if isinstance(e, asyncssh.SFTPConnectionLost | asyncssh.SFTPNoConnection):
        return TransportError(f"connection to the node at {where} lost", code="E_CONNECTION_LOST")
    if isinstance(e, asyncssh.SFTPError):
        return TransportError(f"the node refused the request: {e.reason}", code="E_SFTP")
    if isinstance(e, asyncssh.ConnectionLost | asyncssh.DisconnectError):
        return TransportError(
            f"the node at {where} closed the connection ({e.reason})", code="E_CONNECTION_LOST"
        )
    if isinstance(e, TimeoutError | asyncio.TimeoutError):
        return TransportError(f"the node at {where} did not answer in time", code="E_TIMEOUT")
    if isinstance(e, OSError):
        why = e.strerror or str(e) or type(e).__name__
        return TransportError(f"cannot reach the node at {where}: {why}", code="E_UNREACHABLE")
    return TransportError(f"SSH failure talking to the node at {where}: {e}", code="E_TRANSPORT")


#: Seconds an aborted upload's task gets to notice the dropped connection.
_ABORT_GRACE = 5.0

_NETWORK_ERRORS = (OSError, asyncssh.Error, asyncssh.SFTPError, TimeoutError, asyncio.TimeoutError)


class _ParamikoSession(Session):
    """The same session over paramiko (blocking calls run in a worker thread)."""

    async def upload(self, local: Path, name: str, progress: TransferProgress | None) -> None:
        """Upload ``local`` as ``/inbox/<name>``; the node commits it when the file is closed.

        Cancelled (Ctrl-C), the transport is closed under the worker thread, so paramiko's
        ``put`` cannot send its close either: the node discards the partial upload.
        Re-raises the :class:`asyncio.CancelledError`.
        """
        try:
            # confirm=False: the node may already be processing the file when put() would stat it
            await asyncio.to_thread(
                self._sftp.put, str(local), f"/inbox/{name}", callback=progress, confirm=False
            )
        except asyncio.CancelledError:
            self._abort()
            raise

    async def outbox(self) -> list[OutboxEntry]:
        """The regular files in ``/outbox``."""
        attrs = await asyncio.to_thread(self._sftp.listdir_attr, "/outbox")
        out = [OutboxEntry(a.filename, int(a.st_size or 0)) for a in attrs]
        return sorted((e for e in out if e.name not in (".", "..")), key=lambda x: x.name)

    async def download(self, name: str, local: Path) -> None:
        """Download ``/outbox/<name>`` into ``local``."""
        await asyncio.to_thread(self._sftp.get, f"/outbox/{name}", str(local))


async def _attempt_paramiko(cfg: ClientConfig, op: Callable[[Session], Awaitable[T]]) -> T:
    import socket

    import paramiko

    try:
        known = cfg.known_hosts.read_text(encoding="utf-8")
    except FileNotFoundError:
        known = ""
    pinned = pinned_keys(known, cfg.node_host, cfg.node_port)
    presented: list[str] = []
    where = f"{cfg.node_host}:{cfg.node_port}"

    class Pinning(paramiko.MissingHostKeyPolicy):
        # The client loads no host keys, so paramiko asks this policy about every key.
        def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
            presented.append(f"{key.get_name()} {key.get_base64()}")
            if decide(pinned, presented[-1]) is HostKeyDecision.CHANGED:
                raise paramiko.SSHException("host key changed")

    def connect() -> Any:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(Pinning())
        client.connect(
            cfg.node_host,
            cfg.node_port,
            username=cfg.dept,
            key_filename=str(cfg.ssh_key),
            passphrase=os.environ.get(KEY_PASSPHRASE_ENV) or None,
            allow_agent=False,
            look_for_keys=False,
            timeout=cfg.connect_timeout,
            banner_timeout=cfg.connect_timeout,
            auth_timeout=cfg.connect_timeout,
        )
        return client

    def convert(e: BaseException) -> TransportError:
        if presented and decide(pinned, presented[-1]) is HostKeyDecision.CHANGED:
            return host_key_changed(
                cfg.node_host, cfg.node_port, presented[-1], str(cfg.known_hosts)
            )
        if isinstance(e, paramiko.AuthenticationException):
            return TransportError(
                f"the node at {where} refused the login of {cfg.dept} (permission denied); the "
                "node administrator sees the reason in the node's log",
                code="E_LOGIN",
            )
        if isinstance(e, TimeoutError | socket.timeout):
            return TransportError(f"the node at {where} did not answer in time", code="E_TIMEOUT")
        if isinstance(e, paramiko.SSHException | EOFError):
            return TransportError(
                f"the node at {where} closed the connection ({e})", code="E_CONNECTION_LOST"
            )
        if isinstance(e, OSError):
            why = e.strerror or str(e) or type(e).__name__
            return TransportError(f"cannot reach the node at {where}: {why}", code="E_UNREACHABLE")
        return TransportError(
            f"SSH failure talking to the node at {where}: {e}", code="E_TRANSPORT"
        )

    try:
        client = await asyncio.to_thread(connect)
    except (OSError, EOFError, paramiko.SSHException) as e:
        raise convert(e) from e
    try:
        if presented and decide(pinned, presented[-1]) is HostKeyDecision.NEW:
            # Trust on first use, recorded only after the login succeeded.
            atomic_write(
                cfg.known_hosts,
                add_pin(known, cfg.node_host, cfg.node_port, presented[-1]).encode(),
                0o644,
            )
        sftp = await asyncio.to_thread(client.open_sftp)
        try:
            return await op(_ParamikoSession(sftp, client.close))
        finally:
            sftp.close()
    except OSError as e:  # paramiko reports SFTP refusals as IOError/OSError
        if isinstance(e, PermissionError | FileNotFoundError) or e.errno is None:
            raise TransportError(f"the node refused the request: {e}", code="E_SFTP") from e
        raise convert(e) from e
    except (EOFError, paramiko.SSHException) as e:
        raise convert(e) from e
    finally:
        client.close()


async def _attempt(cfg: ClientConfig, op: Callable[[Session], Awaitable[T]]) -> T:
    if cfg.transport == "paramiko":
        return await _attempt_paramiko(cfg, op)
    try:
        known = cfg.known_hosts.read_text(encoding="utf-8")
    except FileNotFoundError:
        known = ""
    client = _PinningClient(pinned_keys(known, cfg.node_host, cfg.node_port))
    passphrase = os.environ.get(KEY_PASSPHRASE_ENV) or None
    try:
        conn, _ = await asyncssh.create_connection(
            lambda: client,
            cfg.node_host,
            cfg.node_port,
            username=cfg.dept,
            client_keys=_client_keys(cfg),
            passphrase=passphrase,
            # An empty known-hosts list makes asyncssh ask _PinningClient about every key.
            known_hosts=asyncssh.import_known_hosts(""),
            agent_path=None,
            config=None,
            preferred_auth="publickey",
            connect_timeout=cfg.connect_timeout,
            login_timeout=cfg.connect_timeout,
            keepalive_interval=30,
        )
    except _NETWORK_ERRORS as e:
        raise _convert(e, cfg, client) from e
    try:
        if client.decision is HostKeyDecision.NEW and client.presented is not None:
            # Trust on first use, recorded only after the login succeeded.
            atomic_write(
                cfg.known_hosts,
                add_pin(known, cfg.node_host, cfg.node_port, client.presented).encode(),
                0o644,
            )
        async with conn.start_sftp_client() as sftp:
            return await op(Session(sftp, conn.abort))
    except _NETWORK_ERRORS as e:
        raise _convert(e, cfg, None) from e
    finally:
        conn.close()
        await conn.wait_closed()


def run_with_node(
    cfg: ClientConfig,
    op: Callable[[Session], Awaitable[T]],
    *,
    retries: int | None = None,
    on_retry: Callable[[BaseException, float], None] | None = None,
) -> T:
    """Connect, run ``op`` in an SFTP session, disconnect; retry transient failures.

    The whole attempt (connect + ``op``) is repeated, so ``op`` must be safe to run again.
    Raises :class:`TransportError` (exit code 5).
    """
    delays = backoff_delays(cfg.retries if retries is None else retries)
    return asyncio.run(retry_async(lambda: _attempt(cfg, op), delays, on_retry=on_retry))
