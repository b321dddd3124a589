"""The node's SFTP front (:class:`SFTPFront`): its own accept loop and the login checks.

The process around it (recovery, the pipeline process, the drop folder, signals) is
:mod:`exchange_server.front.serve`; asyncssh's per-connection callbacks, the :class:`Admission`
value and the refusal codes are :mod:`exchange_server.front.login`.

The SFTP front runs its own accept loop instead of asyncssh's listener, because the IP
registration (部省 第五条) must be enforced *before* the SSH banner: an address that belongs to no
active department, a banned address, one more connection than ``max_connections``, or one more
connection not yet logged in than ``max_preauth_per_address`` (from that address) or
``max_preauth_connections`` (in all) is closed at once and is sent nothing (not even a version
string to fingerprint). Admitted sockets are handed to :func:`asyncssh.run_server`. A
connection that does not ask to log in within ``handshake_timeout_seconds`` is closed
(``E_SILENT``), and one that offers more than ``max_auth_tries`` refused credentials is
disconnected (``E_AUTH_TRIES``); both count as failed logins, each refused credential once.

Login (each time from the store, so registry changes apply without a restart):

1. the user name must be a registered, active department code;
2. the peer address must lie in that department's registered networks;
3. the department's registered certificate must verify now against the node's trust root and
   current CRL (:meth:`Node.trust` re-reads the CRL when the file changes). asyncssh does no
   revocation check, so this is what refuses a revoked or expired department, whichever
   credential it presents;
4. only then are credentials admitted: the department's registered SSH keys, and an
   authorized-keys ``x509v3-*`` entry for exactly its registered certificate (RFC 6187).

Every refusal is one log line on ``exchange_server.front.sftp`` (reason, address, user) and an audit
event ``login.refused``; a login is ``login.ok``. Audit writes run on one background thread so
the event loop never waits for the database. A connection that asked to authenticate and ended
without success counts as one failed login for :class:`~exchange_server.front.gate.Gate`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import itertools
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncssh
from cryptography import x509
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from exchange_common.errors import CertificateError, InputError, TransportError
from exchange_common.net import in_networks, normalise_address, parse_networks_lenient
from exchange_server.front.gate import (
    BanPolicy,
    Gate,
    RefusalThrottle,
)
from exchange_server.front.login import (
    _PRE_BANNER,
    E_ADDRESS,
    E_BANNED,
    E_BUSY,
    E_DISABLED,
    E_UNAVAILABLE,
    E_UNKNOWN_ADDRESS,
    E_UNKNOWN_USER,
    Admission,
    _LoginServer,
    _safe_user,
)
from exchange_server.front.metrics import FRONT
from exchange_server.front.sftp import DepartmentSFTPServer
from exchange_server.front.sftp_handles import commit_on_close_supported
from exchange_server.front.sftp_services import SessionInfo, SFTPServices
from exchange_server.node import Node, utcnow
from exchange_server.pipeline.handover import Handover
from exchange_server.store.audit import EventSpec, append_events
from exchange_server.store.models import (
    Department,
    DepartmentNetwork,
    DepartmentSSHKey,
    DeptState,
)
from pki.identity import DeptCode, IPNetwork, Role, parse_dept_code
from pki.keys import certificate_pem, load_certificates
from pki.verify import verify_certificate

__all__ = [
    "SFTPFront",
]

#: Login decisions and refusals (one line each), as the operator guide documents.
log = logging.getLogger("exchange_server.front.sftp")
#: Process lifecycle.
srv_log = logging.getLogger("exchange_server.front.server")

#: How long the allow-list of registered networks is reused before it is read again.
ALLOWLIST_TTL_SECONDS = 1.0
#: Seconds to wait for the client's SSH version string before choosing its cipher offer
#: (clients that wait for the node's version first get the legacy superset after it).
CLIENT_VERSION_WAIT = 0.5
#: Attempts to append a batch of audit events when concurrent writers race for the next number.
_AUDIT_ATTEMPTS = 8
#: Identical pre-banner refusals (same reason and address) within this window are audited once.
REFUSAL_AUDIT_WINDOW_SECONDS = 60.0


class SFTPFront:
    """The SFTP listener of one node process."""

    def __init__(
        self,
        node: Node,
        ingest: Handover,
        *,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], dt.datetime] = utcnow,
        io_threads: int = 4,
    ):
        cfg = node.config
        self.node = node
        self.ingest = ingest
        self._now = now
        self._clock = clock
        self.gate = Gate(
            BanPolicy(
                max_failures=cfg.security.max_auth_failures,
                window_seconds=cfg.security.failure_window_seconds,
                ban_seconds=cfg.security.ban_seconds,
            ),
            clock=clock,
        )
        self._throttle = RefusalThrottle(REFUSAL_AUDIT_WINDOW_SECONDS, clock=clock)
        # Login checks and upload commits (which fsync) get separate threads, so a slow disk
        # never delays a login and a burst of logins never delays an acknowledgement.
        self._auth_pool = ThreadPoolExecutor(max_workers=io_threads, thread_name_prefix="auth")
        self._pool = ThreadPoolExecutor(max_workers=io_threads, thread_name_prefix="sftp-io")
        # One writer thread: audit events keep their order and never contend with each other.
        self._audit_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit")
        self._audit_lock = threading.Lock()
        self._audit_queue: list[tuple[EventSpec, dt.datetime]] = []
        self.services = SFTPServices(
            node=node,
            ingest=ingest,
            executor=self._pool,
            max_upload_bytes=cfg.limits.max_upload_bytes,
        )
        self._trust_lock = threading.Lock()
        self._allow: tuple[float, tuple[IPNetwork, ...]] | None = None
        self._allow_refresh: asyncio.Future[tuple[IPNetwork, ...]] | None = None
        self._listener: socket.socket | None = None
        self._accept_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._conns: set[Any] = set()
        self._active = 0
        #: Connections not yet logged in, per address.
        self._preauth: Counter[str] = Counter()
        self._options: Any = None
        self._legacy_options: Any = None
        # The registry keeps only a department's leaf certificate and trust/root.pem may hold
        # only the root: the intermediates above the node's own certificate (the same issuing
        # CA) complete the path. They are untrusted hints: the path must still end in a root.
        self._ca_chain: tuple[x509.Certificate, ...] = ()

    # -- start and stop ---------------------------------------------------------------------

    def _build_options(self, algs: list[str]) -> Any:
        cfg = self.node.config
        host_key_path = cfg.path(cfg.sftp.host_key)
        try:
            host_key = asyncssh.read_private_key(str(host_key_path))
        except (OSError, asyncssh.KeyImportError) as e:
            raise InputError(
                f"cannot load the SSH host key {host_key_path}: {e}", code="E_HOST_KEY"
            ) from e
        trust = self.node.trust()
        with contextlib.suppress(InputError):
            self._ca_chain = tuple(load_certificates(cfg.path(cfg.cert))[1:])
        if not trust.roots:
            raise InputError("the trust store holds no root certificate", code="E_TRUST")
        x509_roots = [
            asyncssh.import_certificate(certificate_pem(c))
            for c in (*trust.roots, *trust.intermediates, *self._ca_chain)
        ]
        return asyncssh.SSHServerConnectionOptions(
            server_host_keys=[host_key],
            server_factory=lambda: _LoginServer(self),
            sftp_factory=self._sftp_factory,
            allow_scp=False,
            x509_trusted_certs=x509_roots,
            login_timeout=cfg.limits.login_timeout_seconds,
            # Notice vanished clients, so their open uploads are discarded within minutes.
            keepalive_interval=30,
            keepalive_count_max=4,
            password_auth=False,
            kbdint_auth=False,
            host_based_auth=False,
            gss_host=None,
            agent_forwarding=False,
            x11_forwarding=False,
            allow_pty=False,
            # [sftp] encryption_algs: AES-GCM by default (see SFTPConfig for why); other
            # clients also get legacy_encryption_algs (_options_for).
            encryption_algs=algs,
            # Bigger SSH packets and a wider window: fewer, larger writes per byte uploaded,
            # which is what a Python SSH stack pays for.
            window=8 * 1024 * 1024,
            max_pktsize=128 * 1024,
        )

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on ``host:port`` (0 = any free port); return the bound address."""
        sftp = self.node.config.sftp
        self._options = self._build_options(list(sftp.encryption_algs))
        legacy = [a for a in sftp.legacy_encryption_algs if a not in sftp.encryption_algs]
        self._legacy_options = self._build_options([*sftp.encryption_algs, *legacy])
        if not commit_on_close_supported():
            srv_log.error(
                "this asyncssh version has no recognisable SFTP close handler: every upload "
                "will be refused at close; use the asyncssh version in pyproject.toml"
            )
        try:
            infos = socket.getaddrinfo(
                host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
            family = infos[0][0]
            sock = socket.create_server(
                (host, port), family=family, backlog=128, dualstack_ipv6=False
            )
        except OSError as e:
            raise TransportError(
                f"cannot listen on {host}:{port}: {e.strerror or e}", code="E_LISTEN"
            ) from e
        sock.setblocking(False)
        self._listener = sock
        bound = sock.getsockname()
        self._accept_task = asyncio.create_task(self._accept_loop(sock), name="sftp-accept")
        return str(bound[0]), int(bound[1])

    async def close(self, grace: float = 5.0) -> None:
        """Stop accepting, close every connection (open uploads are discarded), flush audit."""
        if self._accept_task is not None:
            self._accept_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accept_task
        if self._listener is not None:
            self._listener.close()
        for conn in list(self._conns):
            with contextlib.suppress(Exception):
                conn.close()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._auth_pool.shutdown, True)
        await loop.run_in_executor(None, self._pool.shutdown, True)
        await loop.run_in_executor(None, self._audit_pool.shutdown, True)

    # -- accepting ----------------------------------------------------------------------------

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, peer = await loop.sock_accept(listener)
            except asyncio.CancelledError:
                raise
            except OSError as e:
                # Out of descriptors or a reset before accept: keep serving, briefly back off.
                srv_log.warning("accept failed: %s", e.strerror or e)
                if e.errno in {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}:
                    await asyncio.sleep(0.1)
                continue
            task = asyncio.create_task(self._handle(sock, peer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _handle(self, sock: socket.socket, peer: Any) -> None:
        raw = str(peer[0]) if peer else "?"
        address = normalise_address(raw)
        try:
            reason = await self._admit_connection(address)
        except Exception:
            srv_log.exception("admission check failed; refusing %s", raw)
            reason = E_UNAVAILABLE
        if reason is not None:
            # Refused before the banner: close without sending a single byte.
            with contextlib.suppress(OSError):
                sock.close()
            self._refused(reason, address or raw, None)
            return
        assert address is not None  # admitted
        self._active += 1
        self._preauth[address] += 1
        logged_in = False
        try:
            sock.setblocking(False)
            options = await self._options_for(sock)
            # run_server returns once the client has logged in
            conn = await asyncssh.run_server(sock, options=options)
            self._leave_preauth(address)
            logged_in = True
            await conn.wait_closed()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            # Whatever one client does (bad packets, failed auth, a reset) ends its connection
            # only; the failed-login bookkeeping happens in _LoginServer.connection_lost.
            srv_log.debug("connection from %s ended: %s: %s", address, type(e).__name__, e)
        finally:
            self._active -= 1
            if not logged_in:
                self._leave_preauth(address)
            with contextlib.suppress(OSError):
                sock.close()

    async def _options_for(self, sock: socket.socket) -> Any:
        """GCM-only options for a client whose version string names it as one that always
        offers AES-GCM (OpenSSH keeps its cipher and its speed); the legacy superset for any
        other, or when the client waits for the node's version first (decision 0009)."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        fd = sock.fileno()

        def readable() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(fd, readable)
        try:
            await asyncio.wait_for(ready, CLIENT_VERSION_WAIT)
            head = sock.recv(64, socket.MSG_PEEK)
        except (TimeoutError, OSError):
            head = b""
        finally:
            loop.remove_reader(fd)
        version = head.split(b"\n", 1)[0].decode("ascii", "replace")
        software = version.removeprefix("SSH-2.0-")
        gcm = version.startswith("SSH-2.0-") and software.startswith(
            self.node.config.sftp.gcm_clients
        )
        return self._options if gcm else self._legacy_options

    def _leave_preauth(self, address: str) -> None:
        self._preauth[address] -= 1
        if self._preauth[address] <= 0:
            del self._preauth[address]

    async def _admit_connection(self, address: str | None) -> str | None:
        if address is None:
            return E_UNKNOWN_ADDRESS
        if self.gate.is_banned(address):
            return E_BANNED
        networks = await self._allowlist()
        if not in_networks(address, networks):
            return E_UNKNOWN_ADDRESS
        # Last, with no await between these checks and the caller's count of the connection.
        # Connections not yet logged in have caps of their own, per address and in total, so
        # that silent ones from one address cannot take the slots of every department.
        limits = self.node.config.limits
        if self._active >= limits.max_connections:
            return E_BUSY
        if self._preauth[address] >= limits.max_preauth_per_address:
            return E_BUSY
        if sum(self._preauth.values()) >= limits.max_preauth_connections:
            return E_BUSY
        return None

    async def _allowlist(self) -> tuple[IPNetwork, ...]:
        now = self._clock()
        if self._allow is not None and now - self._allow[0] < ALLOWLIST_TTL_SECONDS:
            return self._allow[1]
        if self._allow_refresh is None or self._allow_refresh.done():
            loop = asyncio.get_running_loop()
            self._allow_refresh = loop.run_in_executor(self._auth_pool, self._load_allowlist)
        # Shielded: one caller giving up must not cancel the refresh the others wait for.
        networks = await asyncio.shield(self._allow_refresh)
        self._allow = (self._clock(), networks)
        return networks

    def _load_allowlist(self) -> tuple[IPNetwork, ...]:
        """Every registered network of an active department (blocking)."""
        with self.node.session(write=False) as s:
            rows = s.exec(
                select(DepartmentNetwork.cidr)
                .join(Department, col(Department.code) == col(DepartmentNetwork.dept_code))
                .where(Department.state == DeptState.ACTIVE.value)
            ).all()
        return parse_networks_lenient(rows)

    # -- login ---------------------------------------------------------------------------------

    async def admit_login(self, username: str, address: str) -> Admission:
        """Run the login checks for ``username`` from ``address`` (off the event loop)."""
        if self.gate.is_banned(address):
            return Admission.refuse(E_BANNED)
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._auth_pool, self._admit_login, username, address)
        except Exception as e:
            srv_log.exception("login check for %s failed", _safe_user(username))
            return Admission.refuse(E_UNAVAILABLE, f"{type(e).__name__}: {e}")

    def _admit_login(self, username: str, address: str) -> Admission:
        """The login checks (blocking: store and certificate verification)."""
        try:
            code = parse_dept_code(username)
        except InputError:
            return Admission.refuse(E_UNKNOWN_USER)
        with self.node.session(write=False) as s:
            dept = s.get(Department, code)
            if dept is None:
                return Admission.refuse(E_UNKNOWN_USER)
            networks = s.exec(
                select(DepartmentNetwork.cidr).where(DepartmentNetwork.dept_code == code)
            ).all()
            keys = s.exec(
                select(DepartmentSSHKey.fingerprint, DepartmentSSHKey.public_key)
                .where(DepartmentSSHKey.dept_code == code)
                .order_by(col(DepartmentSSHKey.id))
            ).all()
            state, cert_pem, cert_fp = dept.state, dept.cert_pem, dept.cert_fingerprint
        if state != DeptState.ACTIVE.value:
            return Admission.refuse(E_DISABLED)
        if not in_networks(address, networks):
            return Admission.refuse(E_ADDRESS, f"{address} is not registered for {code}")
        try:
            cert = x509.load_pem_x509_certificate(cert_pem.encode())
            with self._trust_lock:
                trust = self.node.trust()
            identity = verify_certificate(
                cert, trust, now=self._now(), chain=self._ca_chain, role=Role.DEPARTMENT
            )
        except CertificateError as e:
            return Admission.refuse(e.code, e.detail or e.message)
        except (InputError, ValueError) as e:
            return Admission.refuse("E_TRUST", str(e))
        if identity.code != code or identity.fingerprint != cert_fp:
            return Admission.refuse("E_IDENTITY", "registered certificate does not match")
        parsed: list[tuple[str, Any]] = []
        for fp, line in keys:
            try:
                parsed.append((fp, asyncssh.import_public_key(line)))
            except (asyncssh.KeyImportError, ValueError):
                srv_log.error("registered SSH key %s of %s cannot be read; ignored", fp, code)
        entry: str | None = None
        try:
            exported = asyncssh.import_certificate(cert_pem.encode()).export_certificate()
            entry = exported.decode().strip().splitlines()[0]
        except (asyncssh.KeyImportError, ValueError, IndexError) as e:
            # An algorithm asyncssh cannot offer for X.509 login: SSH keys still work.
            srv_log.error("certificate of %s unusable for X.509 login: %s", code, e)
        return Admission(dept=code, ssh_keys=tuple(parsed), x509_entry=entry)

    def login_ok(self, dept: DeptCode, address: str, method: str) -> None:
        """Record a successful login."""
        self.gate.record_success(address)
        FRONT.login_ok(method)
        log.info("login ok: address=%s user=%s method=%s", address, dept, method)
        self._audit("login.ok", dept, {"address": address, "method": method})

    def login_failed(
        self, reason: str, address: str, user: str | None, *, failures: int = 1
    ) -> None:
        """Record a connection that tried to log in and did not (``failures`` refused
        credentials, each counted by the ban gate), or stayed silent (``E_SILENT``)."""
        self._refused(reason, address, user)
        banned = False
        for _ in range(failures):
            banned = self.gate.record_failure(address) or banned
        if banned:
            seconds = self.gate.policy.ban_seconds
            FRONT.bans.inc()
            log.warning("address banned: address=%s seconds=%s", address, seconds)
            self._audit("login.ban", None, {"address": address, "seconds": seconds})

    def _refused(self, reason: str, address: str, user: str | None) -> None:
        safe = _safe_user(user)
        FRONT.login_refused(reason)
        log.warning("login refused: reason=%s address=%s user=%s", reason, address, safe)
        detail: dict[str, Any] = {"reason": reason, "address": address, "user": safe}
        if reason in _PRE_BANNER:
            # Pre-banner refusals cost an attacker nothing: audit the first of a burst, with
            # the number of identical ones suppressed since the last recorded one.
            suppressed = self._throttle.admit(reason, address)
            if suppressed is None:
                return
            if suppressed:
                detail["suppressed"] = suppressed
        subject = safe if user is not None and safe == user else None
        self._audit("login.refused", subject, detail)

    def _audit(self, action: str, subject: str | None, detail: dict[str, Any]) -> None:
        """Queue one event; the audit thread writes every queued event in one transaction, so a
        login storm costs one commit per batch instead of one per login (order kept)."""
        with self._audit_lock:
            self._audit_queue.append((EventSpec("sftp", action, subject, detail), self._now()))
            if len(self._audit_queue) > 1:
                return  # a write already scheduled takes this one too
        try:
            self._audit_pool.submit(self._write_audit)
        except RuntimeError:  # shutting down
            srv_log.warning("audit event %s not recorded: shutting down", action)

    def _write_audit(self) -> None:
        with self._audit_lock:
            batch, self._audit_queue = self._audit_queue, []
        if not batch:
            return
        for attempt in range(_AUDIT_ATTEMPTS):
            try:
                with self.node.session() as s:
                    for at, group in itertools.groupby(batch, key=lambda b: b[1]):
                        append_events(s, [spec for spec, _ in group], now=at)
                return
            except IntegrityError:
                # Another writer (the pipeline, an admin command) appended the same sequence
                # number first; a new transaction reads the new head of the chain.
                time.sleep(0.02 * (attempt + 1))
            except Exception:
                srv_log.exception("cannot record %d audit event(s)", len(batch))
                return
        srv_log.error("cannot record %d audit event(s): the audit trail stayed busy", len(batch))

    # -- sessions ------------------------------------------------------------------------------

    def connection_opened(self, conn: Any) -> None:
        self._conns.add(conn)

    def connection_closed(self, conn: Any) -> None:
        self._conns.discard(conn)

    def _sftp_factory(self, chan: Any) -> DepartmentSFTPServer:
        owner = chan.get_connection().get_owner()
        info = getattr(owner, "session_info", None)
        if not isinstance(info, SessionInfo):  # pragma: no cover - asyncssh opens after auth
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, "not authenticated"
            )
        return DepartmentSFTPServer(chan, self.services, info)
