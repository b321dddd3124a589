"""A real node for integration tests: test CA, node home, departments, ``exchange-server serve``.

:class:`NodeHarness` builds everything from scratch under one folder (nothing is committed):

- a throw-away ministry CA (``root/ca``; with ``intermediate=True`` an issuing CA under the
  root signs everything) and a node certificate issued by it;
- a node home (``root/home``) made by :func:`exchange_server.admin.home.create_home`, with optional
  ``[security]``/``[sftp]``/``[limits]``/``[log]`` overrides written into ``node.toml``;
- one credential set per :class:`DeptSpec` (``root/creds/<CODE>/``): the X.509 key and
  certificate chain the CA issued (registered networks = the department's addresses), and an
  OpenSSH ed25519 key pair; each department is registered in the node's registry;
- ``exchange-server serve --home HOME --host 127.0.0.1 --port 0`` (plus ``serve_args``) as a
  subprocess; :meth:`start` returns once it printed ``listening on HOST:PORT``. Its stderr (the
  node's log, unless ``[log] file`` or ``--log-file`` sends it elsewhere) goes to
  ``root/node.log``.

Typical use, one node per test module::

    @pytest.fixture(scope="module")
    def node(tmp_path_factory):
        with NodeHarness(tmp_path_factory.mktemp("node"), [DeptSpec("MZ330100")]) as h:
            yield h

Helpers cover what tests check afterwards (uploads in the store, files in the spool, audit
events, the log) and what they change while the node runs (revoke + install a CRL, disable a
department), plus ready-made client invocations: OpenSSH ``sftp`` argv, asyncssh and paramiko.
Everything binds to loopback addresses only; a test may use any ``127.0.0.x`` as a source.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import io
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from exchange_common.errors import StoreError
from exchange_common.fs import atomic_write
from exchange_common.limits import Limits
from exchange_server.admin.home import create_home
from exchange_server.config import CONFIG_NAME, load_config, render_config
from exchange_server.data.catalog import CatalogStore
from exchange_server.node import Node, utcnow
from exchange_server.spool import Spool
from exchange_server.store.models import AuditEvent, DeptState, Upload
from exchange_server.store.registry import add_department, set_state
from pki.bundle import Member, seal_to_file
from pki.ca import CertificateAuthority
from pki.identity import DeptCode, Role, parse_networks
from pki.keys import certificate_pem, load_certificates, load_private_key, private_key_pem

__all__ = [
    "DeptCredentials",
    "DeptSpec",
    "NodeHarness",
    "require_binary",
    "wait_until",
]

#: Seconds to wait for the node to start or stop.
START_TIMEOUT = 30.0


def require_binary(name: str) -> str:
    """Path of the program ``name``, or skip the calling test saying which one is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not found on PATH: install it to run this test")
    return path


def wait_until(
    predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or predicate!r}")
        time.sleep(interval)


@dataclass(frozen=True)
class DeptSpec:
    """A department to create: code, name, the addresses it connects from, and its quota."""

    code: str
    name: str = "测试部门"
    addresses: tuple[str, ...] = ("127.0.0.1",)
    ssh_key: bool = True
    quota_bytes: int | None = None


@dataclass
class DeptCredentials:
    """What a department holds: its X.509 key + chain and its OpenSSH key pair."""

    code: str
    name: str
    addresses: tuple[str, ...]
    cert_path: Path
    key_path: Path
    serial: str
    ssh_key_path: Path | None = None
    ssh_public: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def address(self) -> str:
        """The first registered address (the one tests connect from by default)."""
        return self.addresses[0]

    def x509_client_keys(self) -> list[tuple[str, str]]:
        """asyncssh ``client_keys`` presenting the ministry certificate (RFC 6187 login)."""
        return [(str(self.key_path), str(self.cert_path))]

    def ssh_client_keys(self) -> list[str]:
        """asyncssh ``client_keys`` presenting the registered OpenSSH key."""
        assert self.ssh_key_path is not None, f"{self.code} has no SSH key"
        return [str(self.ssh_key_path)]


class NodeHarness:
    """Build a node world under ``root`` and run the node as a subprocess (see module doc)."""

    def __init__(
        self,
        root: Path,
        departments: Sequence[DeptSpec],
        *,
        security: dict[str, Any] | None = None,
        sftp: dict[str, Any] | None = None,
        host: str = "127.0.0.1",
        intermediate: bool = False,
        database: str | None = None,
        audit: dict[str, Any] | None = None,
        log: dict[str, Any] | None = None,
        serve_args: Sequence[str] = (),
    ):
        self.root = Path(root)
        self.audit_settings = dict(audit or {})
        self.log_settings = dict(log or {})
        self.serve_args = list(serve_args)
        self.database = database
        self.intermediate = intermediate
        self.specs = list(departments)
        self.security = dict(security or {})
        self.sftp_settings = dict(sftp or {})
        self.host = host
        self.port = 0
        #: ``http://HOST:PORT/`` of the monitor once started with ``--monitor`` (else None).
        self.monitor_url: str | None = None
        self.home = self.root / "home"
        self.log_path = self.root / "node.log"
        self.depts: dict[str, DeptCredentials] = {}
        self.ca: CertificateAuthority | None = None
        self.proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._node: Node | None = None
        self._log_fh: Any = None

    # -- building -----------------------------------------------------------------------------

    def build(self) -> NodeHarness:
        """Create the CA, the node home and every department (idempotent per harness)."""
        if self.ca is not None:
            return self
        self.root.mkdir(parents=True, exist_ok=True)
        self.ca = CertificateAuthority.init(
            self.root / "ca", "测试部收入认定中心", passphrase=None, intermediate=self.intermediate
        )
        creds = self.root / "creds"
        creds.mkdir(exist_ok=True)
        node_issued = self.ca.issue(
            DeptCode("NODE01"), "测试核对节点", parse_networks(["127.0.0.1"]), role=Role.NODE
        )
        assert node_issued.key is not None
        node_cert, node_key = creds / "NODE01.pem", creds / "NODE01.key"
        atomic_write(node_cert, certificate_pem(node_issued.chain))
        atomic_write(node_key, private_key_pem(node_issued.key, None), 0o600)
        self.ca.crl()
        create_home(
            self.home,
            trust=self.ca.dir / "root.pem",
            cert=node_cert,
            key=node_key,
            crl=self.ca.dir / "crl.pem",
            database=self.database,
        )
        cfg = load_config(self.home)
        # overrides name keys of [security], [sftp] or [limits] (the one limits object)
        overrides = {**self.security, **self.sftp_settings}
        in_limits = {f.name for f in dataclasses.fields(Limits)}
        cfg = dataclasses.replace(
            cfg,
            security=dataclasses.replace(
                cfg.security, **{k: v for k, v in self.security.items() if k not in in_limits}
            ),
            sftp=dataclasses.replace(
                cfg.sftp, **{k: v for k, v in self.sftp_settings.items() if k not in in_limits}
            ),
            limits=dataclasses.replace(
                cfg.limits, **{k: v for k, v in overrides.items() if k in in_limits}
            ),
            audit=dataclasses.replace(cfg.audit, **self.audit_settings),
            log=dataclasses.replace(cfg.log, **self.log_settings),
        )
        atomic_write(self.home / CONFIG_NAME, render_config(cfg).encode())
        CatalogStore.for_home(self.home).publish(EXAMPLE_CATALOG)
        for spec in self.specs:
            self.add_department(spec)
        return self

    def add_department(self, spec: DeptSpec) -> DeptCredentials:
        """Issue credentials for ``spec`` and register it (works while the node runs)."""
        assert self.ca is not None, "build() first"
        folder = self.root / "creds" / spec.code
        folder.mkdir(parents=True, exist_ok=True)
        issued = self.ca.issue(DeptCode(spec.code), spec.name, parse_networks(spec.addresses))
        assert issued.key is not None
        cert_path, key_path = folder / "cert.pem", folder / "key.pem"
        atomic_write(cert_path, certificate_pem(issued.chain))
        atomic_write(key_path, private_key_pem(issued.key, None), 0o600)
        cred = DeptCredentials(
            code=spec.code,
            name=spec.name,
            addresses=spec.addresses,
            cert_path=cert_path,
            key_path=key_path,
            serial=issued.record.serial,
        )
        keys: list[str] = []
        if spec.ssh_key:
            ssh_key = asyncssh.generate_private_key("ssh-ed25519", comment=f"{spec.code}@test")
            cred.ssh_key_path = folder / "id_ed25519"
            atomic_write(cred.ssh_key_path, ssh_key.export_private_key(), 0o600)
            cred.ssh_public = ssh_key.export_public_key().decode().strip()
            (folder / "id_ed25519.pub").write_text(cred.ssh_public + "\n")
            keys.append(cred.ssh_public)

        def register() -> None:
            with self.node() as node, node.session() as s:
                add_department(
                    s,
                    spec.code,
                    name=spec.name,
                    certificate=issued.chain,
                    trust=node.trust(),
                    allow_ips=list(spec.addresses),
                    ssh_keys=keys,
                    quota_bytes=spec.quota_bytes or node.config.security.default_quota_bytes,
                    now=utcnow(),
                    actor="harness",
                )

        _retry_store(register)
        self.depts[spec.code] = cred
        return cred

    # -- running ------------------------------------------------------------------------------

    def _command(self) -> list[str]:
        exe = Path(sys.executable).with_name("exchange-server")
        base = (
            [str(exe)]
            if exe.exists()
            else [sys.executable, "-c", "from exchange_server.admin.cli import main; main()"]
        )
        serve = ["serve", "--home", str(self.home), "--host", self.host, "--port", "0"]
        return [*base, *serve, *self.serve_args]

    def start(self, timeout: float = START_TIMEOUT) -> NodeHarness:
        """Start ``exchange-server serve`` and wait until it accepts connections."""
        self.build()
        assert self.proc is None or self.proc.poll() is not None, "node already running"
        self._log_fh = self.log_path.open("a", encoding="utf-8")
        self._lines = queue.Queue()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            self._command(),
            stdout=subprocess.PIPE,
            stderr=self._log_fh,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        # Each pump writes to its own process's queue: a killed predecessor's EOF must not
        # reach the queue of the process that replaced it.
        threading.Thread(target=self._pump, args=(self.proc, self._lines), daemon=True).start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                pytest.fail(f"node did not start within {timeout}s; log:\n{self.log_text()}")
            if line is None:
                self.proc.wait(5)
                pytest.fail(
                    f"node exited ({self.proc.returncode}) before listening; log:\n"
                    f"{self.log_text()}"
                )
            if line.startswith("monitor on "):
                self.monitor_url = line.split(" ", 2)[2]
            if line.startswith("listening on "):
                self.port = int(line.rsplit(":", 1)[1])
                break
        return self

    @staticmethod
    def _pump(proc: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.strip())
        lines.put(None)

    def stop(self, timeout: float = START_TIMEOUT) -> int | None:
        """SIGTERM the node and wait; returns its exit code (None if it was not running)."""
        proc, self.proc = self.proc, None
        code: int | None = None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait(5)
        elif proc is not None:
            code = proc.returncode
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None
        return code

    def kill(self) -> None:
        """SIGKILL the node (a crash: no clean-up runs)."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(START_TIMEOUT)
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None

    def twin(self, name: str = "twin") -> NodeHarness:
        """A second ``serve`` process of the same built home (its own port and log): two node
        processes sharing one state store and one spool, as behind a TCP load balancer."""
        other = NodeHarness(self.root, self.specs, host=self.host, database=self.database)
        other.ca, other.depts = self.ca, self.depts
        other.log_path = self.root / f"{name}.log"
        return other

    def restart(self) -> NodeHarness:
        """Stop and start again (same home, new port)."""
        self.stop()
        return self.start()

    @property
    def running(self) -> bool:
        """True while the node process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> NodeHarness:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self._node is not None:
            self._node.engine.dispose()
            self._node = None
        if self.ca is not None:
            self.ca.close()

    # -- looking at the node's state ----------------------------------------------------------

    @contextlib.contextmanager
    def node(self) -> Iterator[Node]:
        """The node home opened in this (test) process, for reading the store."""
        if self._node is None:
            self._node = Node.open(self.home)
        yield self._node

    @property
    def spool(self) -> Spool:
        """The node's spool folders."""
        cfg = load_config(self.home)
        return Spool(cfg.path(cfg.spool))

    def outbox(self, code: str) -> Path:
        """A department's outbox folder (what it sees as ``/outbox``)."""
        return self.spool.outbox(code)

    def uploads(self, dept: str | None = None) -> list[Upload]:
        """Upload rows in the store, oldest first (optionally of one department)."""
        with self.node() as node, node.session() as s:
            query = select(Upload).order_by(col(Upload.received_at))
            if dept is not None:
                query = query.where(Upload.dept_code == dept)
            return list(s.exec(query).all())

    def incoming_files(self) -> list[Path]:
        """Committed uploads waiting in ``spool/incoming`` (not the partials)."""
        folder = self.spool.incoming
        return sorted(p for p in folder.iterdir() if p.is_file())

    def partial_files(self) -> list[Path]:
        """Uploads in progress (or left over) in ``spool/incoming/.partial``."""
        return sorted(p for p in self.spool.partial.iterdir())

    def committed_file(self, upload_id: str) -> Path | None:
        """Where a committed upload's bytes are now: ``incoming/`` or, once the pipeline
        rejected it, ``quarantine/`` (None if in neither)."""
        spool = self.spool
        for path in (spool.incoming_path(upload_id), spool.quarantine / upload_id):
            if path.is_file():
                return path
        return None

    def audit(self, action: str | None = None) -> list[AuditEvent]:
        """Audit events, in order (optionally one action)."""
        with self.node() as node, node.session() as s:
            query = select(AuditEvent).order_by(col(AuditEvent.seq))
            if action is not None:
                query = query.where(AuditEvent.action == action)
            return list(s.exec(query).all())

    def log_text(self) -> str:
        """Everything the node logged so far."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    # -- changing the world while the node runs -----------------------------------------------

    def revoke(self, code: str) -> None:
        """Revoke the department's certificate and install a fresh CRL in the node home."""
        assert self.ca is not None
        self.ca.revoke(dept=DeptCode(code))
        pem = self.ca.crl()
        atomic_write(self.home / "trust" / "crl.pem", pem)

    def set_state(self, code: str, state: DeptState) -> None:
        """Enable or disable a department in the registry."""

        def change() -> None:
            with self.node() as node, node.session() as s:
                set_state(s, code, state, now=utcnow(), actor="harness")

        _retry_store(change)

    # -- clients ------------------------------------------------------------------------------

    def sftp_argv(
        self,
        code: str,
        *,
        batch: Path | None = None,
        key: Path | None = None,
        bind: str | None = None,
        extra: Sequence[str] = (),
    ) -> list[str]:
        """argv for the OpenSSH ``sftp`` client logging in as ``code`` with its SSH key."""
        cred = self.depts[code]
        identity = key or cred.ssh_key_path
        assert identity is not None
        argv = [
            require_binary("sftp"),
            "-F",
            "/dev/null",
            "-oBatchMode=yes",
            "-oStrictHostKeyChecking=no",
            "-oUserKnownHostsFile=/dev/null",
            "-oIdentitiesOnly=yes",
            "-oIdentityAgent=none",
            "-oPasswordAuthentication=no",
            "-oLogLevel=ERROR",
            "-oConnectTimeout=10",
            "-i",
            str(identity),
            "-P",
            str(self.port),
        ]
        if bind is not None:
            argv.append(f"-oBindAddress={bind}")
        if batch is not None:
            argv += ["-b", str(batch)]
        argv += [*extra, f"{code}@{self.host}"]
        return argv

    def asyncssh_connect(
        self, code: str, *, method: str = "ssh-key", bind: str | None = None, **kw: Any
    ) -> Any:
        """``asyncssh.connect`` to the node as ``code`` (``method``: ``ssh-key`` or ``x509``)."""
        cred = self.depts[code]
        keys = cred.x509_client_keys() if method == "x509" else cred.ssh_client_keys()
        options: dict[str, Any] = {
            "username": code,
            "client_keys": keys,
            "known_hosts": None,
            "agent_path": None,
            "config": None,
            "preferred_auth": "publickey",
            "connect_timeout": 15,
        }
        if bind is not None:
            options["local_addr"] = (bind, 0)
        options.update(kw)
        return asyncssh.connect(self.host, self.port, **options)

    def seal(
        self,
        code: str,
        body: bytes,
        out: Path,
        *,
        kind: str = "file",
        member: str = "data.csv",
        bundle_id: uuid.UUID | None = None,
        fields: dict[str, Any] | None = None,
        from_node: bool = False,
    ) -> Path:
        """Seal ``body`` as one member: signed by department ``code`` for the node or, with
        ``from_node``, signed by the node for department ``code`` (what the node's workflow
        puts into an outbox: relayed queries, results)."""
        creds = self.root / "creds"
        node_pem, node_key = creds / "NODE01.pem", creds / "NODE01.key"
        cred = self.depts[code]
        signer_pem, signer_key = (
            (node_pem, node_key) if from_node else (cred.cert_path, cred.key_path)
        )
        recipient = cred.cert_path if from_node else node_pem
        seal_to_file(
            [Member(member, io.BytesIO(body), size=len(body))],
            out,
            signer_key=load_private_key(signer_key),
            signer_chain=load_certificates(signer_pem),
            recipients=[load_certificates(recipient)[0]],
            kind=kind,
            fields=fields,
            now=dt.datetime.now(dt.UTC),
            bundle_id=bundle_id,
        )
        return out

    def paramiko_sftp(self, code: str, *, bind: str | None = None) -> Any:
        """A connected paramiko ``SFTPClient`` logged in as ``code`` with its SSH key.

        Close it with ``client.get_channel().get_transport().close()`` (or use the returned
        object's ``close`` and then the transport's).
        """
        paramiko = pytest.importorskip("paramiko")
        cred = self.depts[code]
        assert cred.ssh_key_path is not None
        sock = socket.create_connection(
            (self.host, self.port),
            timeout=15,
            source_address=(bind, 0) if bind is not None else None,
        )
        transport = paramiko.Transport(sock)
        transport.start_client(timeout=15)
        key = paramiko.Ed25519Key.from_private_key_file(str(cred.ssh_key_path))
        transport.auth_publickey(code, key)
        return paramiko.SFTPClient.from_transport(transport)


def _retry_store(change: Callable[[], None], attempts: int = 10) -> None:
    """Run a registry change; retry when the running node appended an audit event at the same
    moment (both read the head of the chain, the second insert then collides)."""
    for attempt in range(attempts):
        try:
            change()
            return
        except (IntegrityError, StoreError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


def free_loopback_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (for tests that need one before starting)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


#: The example catalog every harness node publishes as v1.
EXAMPLE_CATALOG = Path(__file__).resolve().parents[2] / "config" / "catalog.example.toml"


def write_application(
    path: Path, persons: int, resources: tuple[str, ...] = ("RS-SI-01",), **extra: Any
) -> Path:
    """A query application (查询申请) JSON for ``exchange-client push --fields-json``:
    business type 低保, which the example catalog lets 民政 departments ask RS-SI-01 for."""
    body = {
        "business_type": "低保",
        "purpose": "最低生活保障家庭经济状况核对",
        "persons": persons,
        "resources": list(resources),
        **extra,
    }
    path.write_text(json.dumps(body, ensure_ascii=False), encoding="utf-8")
    return path
