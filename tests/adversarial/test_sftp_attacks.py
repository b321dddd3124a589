"""Attacks on the SFTP front of a real node process. Each test names the attack, checks that it
was refused, and that nothing changed: no upload recorded, nothing in ``incoming/`` or
``.partial/``, and the node still serves a legitimate login afterwards.

World (one node for the module, see :mod:`tests.integration.node_harness`):

=============  ==========  ============  ==============================================
department     code        address       used for
=============  ==========  ============  ==============================================
民政           MZ330100    127.0.0.1     the usual victim / attacker account
人社           RS330100    127.0.0.2     "another department" (its address, its outbox)
公安           GA330100    127.0.0.1     revoked during the test
财政           CZ330100    127.0.0.1     disabled during the test
住建           ZJ330100    127.0.0.1     tiny quota
=============  ==========  ============  ==============================================

``127.0.0.9`` belongs to nobody. Linux routes all of ``127.0.0.0/8`` to loopback, so clients bind
their source address to pose as another machine.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from exchange_server.store.models import DeptState
from pki.keys import certificate_pem, private_key_pem
from tests.conftest import make_ca
from tests.integration.node_harness import DeptSpec, NodeHarness, require_binary, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

MZ, RS, GA, CZ, ZJ = "MZ330100", "RS330100", "GA330100", "CZ330100", "ZJ330100"
NOBODY = "127.0.0.9"
MAX_UPLOAD = 4 * 1024 * 1024
TIMEOUT = 60


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeHarness]:
    depts = [
        DeptSpec(MZ, "杭州市民政局", ("127.0.0.1",)),
        DeptSpec(RS, "杭州市人力资源和社会保障局", ("127.0.0.2",)),
        DeptSpec(GA, "杭州市公安局", ("127.0.0.1",)),
        DeptSpec(CZ, "杭州市财政局", ("127.0.0.1",)),
        DeptSpec(ZJ, "杭州市住房和城乡建设局", ("127.0.0.1",), quota_bytes=100_000),
    ]
    security = {"max_upload_bytes": MAX_UPLOAD, "max_auth_failures": 10_000}
    with NodeHarness(tmp_path_factory.mktemp("attacks"), depts, security=security) as harness:
        yield harness


# --- helpers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    uploads: frozenset[str]
    incoming: frozenset[str]
    partials: frozenset[str]


def snapshot(node: NodeHarness) -> Snapshot:
    return Snapshot(
        frozenset(u.id for u in node.uploads()),
        frozenset(p.name for p in node.incoming_files()),
        frozenset(p.name for p in node.partial_files()),
    )


def _run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


def assert_nothing_changed(node: NodeHarness, before: Snapshot) -> None:
    """No upload row, no committed file, no partial appeared; a legitimate login works."""
    after = snapshot(node)
    assert after.uploads == before.uploads, "an upload was recorded"
    assert after.incoming - before.incoming == frozenset(), "a file reached incoming/"
    wait_until(lambda: node.partial_files() == [], timeout=10, what="no partial upload left")
    assert node.running, f"node died; log:\n{node.log_text()}"

    async def legit() -> list[str]:
        async with node.asyncssh_connect(MZ) as conn, conn.start_sftp_client() as sftp:
            names: list[str] = await sftp.listdir("/")
            return names

    assert sorted(_run(legit())) == [".", "..", "inbox", "outbox"]


def refused_in_audit(node: NodeHarness, reason: str, address: str, user: str | None) -> None:
    """Wait for the login.refused audit event and the log line of this refusal."""

    def found() -> bool:
        for ev in node.audit("login.refused"):
            if (
                f'"reason": "{reason}"' in ev.detail
                and f'"address": "{address}"' in ev.detail
                and (user is None or f'"user": "{user}"' in ev.detail)
            ):
                return True
        return False

    wait_until(found, timeout=10, what=f"audit login.refused {reason} {address} {user}")
    line = f"login refused: reason={reason} address={address} user={user or '-'}"
    assert line in node.log_text()


def first_bytes(node: NodeHarness, bind: str, timeout: float = 5.0) -> bytes | None:
    """Connect from ``bind``; return what the node sends before closing (None: still open)."""
    with socket.create_connection(
        (node.host, node.port), timeout=timeout, source_address=(bind, 0)
    ) as s:
        s.settimeout(timeout)
        data = b""
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    return data  # closed by the node
                data += chunk
                if b"\n" in data:
                    return None if data.startswith(b"SSH-") else data
        except ConnectionResetError:
            return data
        except TimeoutError:
            return None


async def login_fails(node: NodeHarness, code: str, **kw: Any) -> None:
    with pytest.raises(
        (asyncssh.PermissionDenied, asyncssh.DisconnectError, ConnectionError, OSError)
    ):
        async with node.asyncssh_connect(code, **kw):
            pass


def openssh(
    node: NodeHarness, code: str, tmp_path: Path, commands: str, **kw: Any
) -> subprocess.CompletedProcess[str]:
    require_binary("sftp")
    batch = tmp_path / f"batch-{uuid.uuid4().hex[:6]}.txt"
    batch.write_text(commands)
    return subprocess.run(
        node.sftp_argv(code, batch=batch, **kw),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


async def _sftp_session(node: NodeHarness, code: str = MZ, **kw: Any) -> Any:
    return await node.asyncssh_connect(code, **kw)


# --- who may connect -------------------------------------------------------------------------------


def test_unknown_address_is_refused_before_the_banner(node: NodeHarness, tmp_path: Path) -> None:
    before = snapshot(node)
    # positive control: a registered address gets the SSH version string
    assert first_bytes(node, "127.0.0.1") is None
    # an unregistered one gets nothing at all, and the connection is closed
    assert first_bytes(node, NOBODY) == b""
    proc = openssh(node, MZ, tmp_path, "ls /\n", bind=NOBODY)
    assert proc.returncode != 0
    assert "SSH-" not in proc.stderr
    _run(login_fails(node, MZ, bind=NOBODY))
    refused_in_audit(node, "E_UNKNOWN_ADDRESS", NOBODY, None)
    assert_nothing_changed(node, before)


def test_department_login_from_another_departments_address(
    node: NodeHarness, tmp_path: Path
) -> None:
    before = snapshot(node)
    # 127.0.0.2 is 人社's registered address: it passes the pre-banner check...
    assert first_bytes(node, "127.0.0.2") is None

    async def rs_itself() -> None:
        async with (
            node.asyncssh_connect(RS, bind="127.0.0.2") as conn,
            conn.start_sftp_client() as sftp,
        ):
            await sftp.listdir("/outbox")

    _run(rs_itself())
    # ...but 民政's account, with 民政's own valid key and certificate, is refused there
    proc = openssh(node, MZ, tmp_path, "ls /\n", bind="127.0.0.2")
    assert proc.returncode != 0
    _run(login_fails(node, MZ, bind="127.0.0.2"))
    _run(login_fails(node, MZ, method="x509", bind="127.0.0.2"))
    refused_in_audit(node, "E_ADDRESS", "127.0.0.2", MZ)
    assert_nothing_changed(node, before)


def test_wrong_key_is_refused(node: NodeHarness, tmp_path: Path) -> None:
    before = snapshot(node)
    stranger = asyncssh.generate_private_key("ssh-ed25519")
    key_file = tmp_path / "stranger"
    key_file.write_bytes(stranger.export_private_key())
    key_file.chmod(0o600)
    proc = openssh(node, MZ, tmp_path, "ls /\n", key=key_file)
    assert proc.returncode != 0
    assert "Permission denied" in proc.stderr
    _run(login_fails(node, MZ, client_keys=[stranger]))
    # another department's genuine key does not open 民政's account either
    rs_key = node.depts[CZ].ssh_key_path
    _run(login_fails(node, MZ, client_keys=[str(rs_key)]))
    refused_in_audit(node, "E_CREDENTIALS", "127.0.0.1", MZ)
    assert_nothing_changed(node, before)


def test_forged_certificate_is_refused(node: NodeHarness, tmp_path: Path) -> None:
    before = snapshot(node)
    # a certificate for 民政's code from a CA the node does not trust
    rogue = make_ca(tmp_path / "rogue-ca")
    forged = rogue.issue(MZ, "假冒民政局", ("127.0.0.1",))
    assert forged.key is not None
    key, cert = tmp_path / "forged.key", tmp_path / "forged.pem"
    key.write_bytes(private_key_pem(forged.key, None))
    cert.write_bytes(certificate_pem(forged.chain))
    _run(login_fails(node, MZ, client_keys=[(str(key), str(cert))]))
    rogue.ca.close()
    # a genuine certificate of another department, presented for 民政's account
    cz = node.depts[CZ]
    _run(login_fails(node, MZ, client_keys=cz.x509_client_keys()))
    assert_nothing_changed(node, before)


def test_revoked_certificate_refuses_x509_and_ssh_key_login(node: NodeHarness) -> None:
    async def login(method: str) -> None:
        async with (
            node.asyncssh_connect(GA, method=method) as conn,
            conn.start_sftp_client() as sftp,
        ):
            await sftp.listdir("/")

    _run(login("x509"))
    _run(login("ssh-key"))
    before = snapshot(node)
    node.revoke(GA)  # fresh CRL installed into HOME/trust/crl.pem while the node runs
    _run(login_fails(node, GA, method="x509"))
    _run(login_fails(node, GA, method="ssh-key"))  # the department is out, whatever it presents
    refused_in_audit(node, "E_REVOKED", "127.0.0.1", GA)
    assert_nothing_changed(node, before)  # 民政 still logs in under the new CRL


def test_disabled_department_is_refused(node: NodeHarness) -> None:
    async def login(method: str) -> None:
        async with (
            node.asyncssh_connect(CZ, method=method) as conn,
            conn.start_sftp_client() as sftp,
        ):
            await sftp.listdir("/")

    _run(login("ssh-key"))
    before = snapshot(node)
    node.set_state(CZ, DeptState.DISABLED)
    try:
        _run(login_fails(node, CZ, method="ssh-key"))
        _run(login_fails(node, CZ, method="x509"))
        refused_in_audit(node, "E_DISABLED", "127.0.0.1", CZ)
        assert_nothing_changed(node, before)
    finally:
        node.set_state(CZ, DeptState.ACTIVE)
    _run(login("x509"))  # registry changes apply without a restart, both ways


def test_unknown_user_is_refused(node: NodeHarness) -> None:
    before = snapshot(node)
    for user in ("root", "../etc", "NOBODY01", "mz330100", "民政"):
        _run(login_fails(node, MZ, username=user))
    refused_in_audit(node, "E_UNKNOWN_USER", "127.0.0.1", "'../etc'")
    # a user name with a newline (log forging) is refused by the SSH layer itself
    paramiko = pytest.importorskip("paramiko")
    cred = node.depts[MZ]
    assert cred.ssh_key_path is not None
    transport = paramiko.Transport(socket.create_connection((node.host, node.port), timeout=10))
    try:
        transport.start_client(timeout=10)
        key = paramiko.Ed25519Key.from_private_key_file(str(cred.ssh_key_path))
        with pytest.raises(paramiko.SSHException):
            transport.auth_publickey(f"{MZ}\nlogin ok: forged", key)
    finally:
        transport.close()
    assert "login ok: forged" not in node.log_text()
    assert_nothing_changed(node, before)


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeHarness]:
    """A second node with a short fuse: 3 failures ban for 3 s; at most 2 connections."""
    security = {"max_auth_failures": 3, "failure_window_seconds": 60, "ban_seconds": 3}
    with NodeHarness(
        tmp_path_factory.mktemp("strict"),
        [DeptSpec(MZ)],
        security=security,
        sftp={"max_connections": 2},
    ) as harness:
        yield harness


def test_brute_force_bans_the_address(strict: NodeHarness) -> None:
    node = strict
    before = snapshot(node)
    stranger = asyncssh.generate_private_key("ssh-ed25519")
    for _ in range(3):
        _run(login_fails(node, MZ, client_keys=[stranger]))
    wait_until(lambda: node.audit("login.ban"), timeout=10, what="the ban")
    # even the right key is refused now, before the banner
    assert first_bytes(node, "127.0.0.1") == b""
    _run(login_fails(node, MZ))
    refused_in_audit(node, "E_BANNED", "127.0.0.1", None)
    assert "address banned: address=127.0.0.1" in node.log_text()
    # until the ban expires
    wait_until(lambda: first_bytes(node, "127.0.0.1") is None, timeout=10, what="ban expiry")
    assert_nothing_changed(node, before)


def test_connection_flood_is_refused_before_the_banner(strict: NodeHarness) -> None:
    node = strict
    before = snapshot(node)

    async def body() -> None:
        held = [await node.asyncssh_connect(MZ) for _ in range(2)]
        try:
            assert await asyncio.to_thread(first_bytes, node, "127.0.0.1") == b""
            await login_fails(node, MZ)
        finally:
            for conn in held:
                conn.close()
                await conn.wait_closed()

    _run(body())
    refused_in_audit(node, "E_BUSY", "127.0.0.1", None)
    wait_until(lambda: first_bytes(node, "127.0.0.1") is None, timeout=10, what="a free slot")
    assert_nothing_changed(node, before)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeHarness]:
    """A node with small pre-login caps: 3 connections not yet logged in per address, 4 in
    all; 2 s to ask to log in; 3 credentials per connection; 3 failures ban for 3 s.
    民政 has two addresses (127.0.0.1 and .3), 人社 one (127.0.0.2)."""
    security = {
        "max_auth_failures": 3,
        "failure_window_seconds": 60,
        "ban_seconds": 3,
        "max_preauth_per_address": 3,
        "max_preauth_connections": 4,
        "handshake_timeout_seconds": 2,
        "max_auth_tries": 3,
    }
    depts = [
        DeptSpec(MZ, "杭州市民政局", ("127.0.0.1", "127.0.0.3")),
        DeptSpec(RS, "杭州市人社局", ("127.0.0.2",)),
    ]
    with NodeHarness(tmp_path_factory.mktemp("guarded"), depts, security=security) as harness:
        yield harness


def _silent(node: NodeHarness, bind: str) -> socket.socket:
    """A TCP connection that reads the node's banner and then says nothing."""
    s = socket.create_connection((node.host, node.port), timeout=10, source_address=(bind, 0))
    s.settimeout(10)
    assert s.recv(4096).startswith(b"SSH-")
    return s


def _closed_by_node(s: socket.socket) -> bool:
    try:
        while chunk := s.recv(4096):
            del chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return True


async def _logs_in(node: NodeHarness, code: str, bind: str) -> list[str]:
    async with node.asyncssh_connect(code, bind=bind) as conn, conn.start_sftp_client() as sftp:
        return sorted(await sftp.listdir("."))


def test_silent_connections_are_capped_closed_and_banned(guarded: NodeHarness) -> None:
    """Silent TCP connections from a registered address (no login attempt) used to fill every
    slot until the login timeout: now they are capped per address and in total, closed after
    the handshake timeout, counted as failed logins and banned; other departments log in."""
    node = guarded
    before = snapshot(node)
    held = [_silent(node, "127.0.0.1") for _ in range(3)]
    try:
        # the address's fourth connection is refused before the banner
        assert first_bytes(node, "127.0.0.1") == b""
        refused_in_audit(node, "E_BUSY", "127.0.0.1", None)
        # 人社, from its own address, is served meanwhile
        assert "outbox" in _run(_logs_in(node, RS, "127.0.0.2"))
        # one more silent connection from 民政's other address fills the total (4) ...
        held.append(_silent(node, "127.0.0.3"))
        assert first_bytes(node, "127.0.0.2") == b""
        # ... for no longer than the handshake timeout: the node closes all of them
        for s in held:
            assert _closed_by_node(s)
    finally:
        for s in held:
            s.close()
    refused_in_audit(node, "E_SILENT", "127.0.0.1", None)
    # three silent connections are three failed logins: the address is banned, the other not
    wait_until(
        lambda: any('"127.0.0.1"' in e.detail for e in node.audit("login.ban")),
        timeout=10,
        what="the ban of 127.0.0.1",
    )
    assert not any('"127.0.0.3"' in e.detail for e in node.audit("login.ban"))
    assert first_bytes(node, "127.0.0.1") == b""
    assert "outbox" in _run(_logs_in(node, RS, "127.0.0.2"))
    assert "outbox" in _run(_logs_in(node, MZ, "127.0.0.3"))
    wait_until(lambda: first_bytes(node, "127.0.0.1") is None, timeout=10, what="ban expiry")
    assert_nothing_changed(node, before)


def test_key_ring_on_one_connection_is_cut_off_and_each_key_counted(guarded: NodeHarness) -> None:
    """30 keys offered on one connection used to count as one failed login: now the node
    disconnects after max_auth_tries refused keys (3 here) and counts each, so one connection
    reaches the ban; the right key from another department still logs in."""
    node = guarded
    before = snapshot(node)
    ring = [asyncssh.generate_private_key("ssh-ed25519") for _ in range(30)]

    async def attack() -> None:
        conn = node.asyncssh_connect(RS, bind="127.0.0.2", client_keys=ring)
        with pytest.raises(asyncssh.DisconnectError, match="Too many authentication failures"):
            async with conn:
                pass

    _run(attack())
    refused_in_audit(node, "E_AUTH_TRIES", "127.0.0.2", RS)
    wait_until(
        lambda: any('"127.0.0.2"' in e.detail for e in node.audit("login.ban")),
        timeout=10,
        what="the ban after one connection",
    )
    assert "outbox" in _run(_logs_in(node, MZ, "127.0.0.3"))
    wait_until(lambda: first_bytes(node, "127.0.0.2") is None, timeout=10, what="ban expiry")
    assert "outbox" in _run(_logs_in(node, RS, "127.0.0.2"))
    assert_nothing_changed(node, before)


def test_stale_crl_stops_the_uploads_of_a_session_opened_before(guarded: NodeHarness) -> None:
    """A session that logged in while the CRL was current kept uploading after it went stale:
    now every commit checks it, the upload is refused (E_CRL_STALE) and nothing is kept; with
    a current CRL again the department uploads as before."""
    node = guarded
    assert node.ca is not None
    before = snapshot(node)
    crl_file = node.home / "trust" / "crl.pem"

    async def body() -> None:
        async with (
            node.asyncssh_connect(MZ, bind="127.0.0.3") as conn,
            conn.start_sftp_client() as sftp,
        ):
            assert node.ca is not None
            stale = node.ca.crl(now=dt.datetime.now(dt.UTC) - dt.timedelta(days=30), days=1)
            crl_file.write_bytes(stale)
            with pytest.raises(asyncssh.SFTPError, match="CRL"):
                async with sftp.open("/inbox/late.bundle", "wb") as f:
                    await f.write(b"x" * 1000)

    try:
        _run(body())
        wait_until(lambda: "reason=E_CRL_STALE" in node.log_text(), timeout=10, what="refusal")
    finally:
        crl_file.write_bytes(node.ca.crl())
    assert_nothing_changed(node, before)  # (its check logs in: with a current CRL again)
    assert "outbox" in _run(_logs_in(node, MZ, "127.0.0.3"))


# --- what a logged-in department may touch ---------------------------------------------------------


def test_path_traversal_and_absolute_paths_are_contained(node: NodeHarness, tmp_path: Path) -> None:
    secret = node.outbox(RS) / "rs-only.txt"
    secret.write_bytes(b"RS data")
    before = snapshot(node)
    escape = f"/tmp/escape-{uuid.uuid4().hex}"
    hostile = [
        "/inbox/../../etc/passwd",
        "../../../../etc/passwd",
        "/etc/passwd",
        str(node.home / "node.toml"),
        str(node.home / "state.db"),
        str(secret),
        "/outbox/../../depts/RS330100/outbox/rs-only.txt",
    ]

    async def body() -> None:
        async with node.asyncssh_connect(MZ) as conn, conn.start_sftp_client() as sftp:
            assert await sftp.realpath("../../..") == "/"
            assert await sftp.realpath("/inbox/../../etc") == "/etc"  # virtual, not the host's
            for path in hostile:
                with pytest.raises(asyncssh.SFTPNoSuchFile):
                    await sftp.stat(path)
                with pytest.raises(asyncssh.SFTPError):
                    await sftp.get(path, str(tmp_path / "loot"))
            for target in (f"/inbox/../..{escape}", f"/../..{escape}", escape, "/inbox/../x"):
                with pytest.raises(asyncssh.SFTPError):
                    async with sftp.open(target, "wb") as f:
                        await f.write(b"x")

    _run(body())
    for cmd in ("get /inbox/../../etc/passwd", f"put {secret} /../..{escape}", "cd /../../etc"):
        proc = openssh(node, MZ, tmp_path, cmd + "\n")
        assert proc.returncode != 0, cmd
    assert not Path(escape).exists()
    assert not (tmp_path / "loot").exists()
    assert_nothing_changed(node, before)


def test_symlink_attempts_are_refused(node: NodeHarness, tmp_path: Path) -> None:
    outbox = node.outbox(MZ)
    rs_secret = node.outbox(RS) / "rs-secret.txt"
    rs_secret.write_bytes(b"RS data")
    # links planted in 民政's outbox (by a compromised process, or a mistake) are never followed
    (outbox / "passwd").symlink_to("/etc/passwd")
    (outbox / "rs-secret.txt").symlink_to(rs_secret)
    before = snapshot(node)

    async def body() -> None:
        async with node.asyncssh_connect(MZ) as conn, conn.start_sftp_client() as sftp:
            for target, link in (
                ("/etc/passwd", "/inbox/p"),
                ("/etc/passwd", "/outbox/p"),
                ("/outbox/passwd", "/inbox/q"),
                (str(rs_secret), "/inbox/r"),
            ):
                with pytest.raises(asyncssh.SFTPError):
                    await sftp.symlink(target, link)
                with pytest.raises(asyncssh.SFTPError):
                    await sftp.link(target, link)
            names = await sftp.listdir("/outbox")
            assert "passwd" not in names and "rs-secret.txt" not in names
            for name in ("passwd", "rs-secret.txt"):
                with pytest.raises(asyncssh.SFTPNoSuchFile):
                    await sftp.lstat(f"/outbox/{name}")
                with pytest.raises(asyncssh.SFTPError):
                    await sftp.readlink(f"/outbox/{name}")
                with pytest.raises(asyncssh.SFTPNoSuchFile):
                    async with sftp.open(f"/outbox/{name}", "rb") as f:
                        await f.read()

    _run(body())
    proc = openssh(node, MZ, tmp_path, "symlink /etc/passwd /inbox/p\n")
    assert proc.returncode != 0
    assert not (outbox / "p").exists()
    assert_nothing_changed(node, before)


def test_reading_another_departments_outbox(node: NodeHarness, tmp_path: Path) -> None:
    (node.outbox(RS) / "rs-result.bundle").write_bytes(b"for RS only")
    (node.outbox(MZ) / "mz-result.bundle").write_bytes(b"for MZ only")
    before = snapshot(node)

    async def as_mz() -> None:
        async with node.asyncssh_connect(MZ) as conn, conn.start_sftp_client() as sftp:
            assert "rs-result.bundle" not in await sftp.listdir("/outbox")
            for path in (
                "/outbox/rs-result.bundle",
                f"/outbox/../../{RS}/outbox/rs-result.bundle",
                f"/depts/{RS}/outbox/rs-result.bundle",
                str(node.outbox(RS) / "rs-result.bundle"),
            ):
                with pytest.raises(asyncssh.SFTPNoSuchFile):
                    async with sftp.open(path, "rb") as f:
                        await f.read()

    async def as_rs() -> bytes:
        async with (
            node.asyncssh_connect(RS, bind="127.0.0.2") as conn,
            conn.start_sftp_client() as sftp,
        ):
            assert "mz-result.bundle" not in await sftp.listdir("/outbox")
            async with sftp.open("/outbox/rs-result.bundle", "rb") as f:
                data: bytes = await f.read()
                return data

    _run(as_mz())
    assert _run(as_rs()) == b"for RS only"  # the owner reads it
    proc = openssh(node, MZ, tmp_path, f"get /outbox/rs-result.bundle {tmp_path / 'loot'}\n")
    assert proc.returncode != 0
    assert not (tmp_path / "loot").exists()
    assert_nothing_changed(node, before)


def test_mutating_operations_are_refused(node: NodeHarness) -> None:
    receipt = node.outbox(MZ) / "keep.receipt"
    receipt.write_bytes(b"signed receipt")
    before = snapshot(node)

    async def body() -> None:
        async with node.asyncssh_connect(MZ) as conn, conn.start_sftp_client() as sftp:
            attempts = [
                sftp.remove("/outbox/keep.receipt"),
                sftp.rename("/outbox/keep.receipt", "/outbox/gone"),
                sftp.posix_rename("/outbox/keep.receipt", "/inbox/gone"),
                sftp.mkdir("/inbox/sub"),
                sftp.mkdir("/new"),
                sftp.rmdir("/outbox"),
                sftp.rmdir("/inbox"),
                sftp.chmod("/outbox/keep.receipt", 0o777),
                sftp.setstat("/outbox", asyncssh.SFTPAttrs(permissions=0o777)),
                sftp.truncate("/outbox/keep.receipt", 0),
            ]
            for attempt in attempts:
                with pytest.raises(asyncssh.SFTPError):
                    await attempt
            with pytest.raises(asyncssh.SFTPError):
                async with sftp.open("/outbox/keep.receipt", "r+b") as f:
                    await f.write(b"forged")
            with pytest.raises(asyncssh.SFTPError):
                async with sftp.open("/outbox/new.receipt", "wb") as f:
                    await f.write(b"forged")
            with pytest.raises(asyncssh.SFTPError):
                async with sftp.open("/inbox/anything", "rb") as f:
                    await f.read()

    _run(body())
    assert receipt.read_bytes() == b"signed receipt"
    assert sorted(p.name for p in node.outbox(MZ).iterdir() if p.name.startswith("new")) == []
    assert_nothing_changed(node, before)


@pytest.mark.parametrize(
    "name",
    [
        ".hidden.bundle",
        "a\x01b.bundle",
        "report\u202eeldnub.exe",
        "x" * 256,
        " lead.bundle",
        "a\\b",
    ],
)
def test_hostile_upload_names_are_refused(node: NodeHarness, name: str) -> None:
    before = snapshot(node)

    async def body() -> None:
        async with node.asyncssh_connect(MZ) as conn, conn.start_sftp_client() as sftp:
            with pytest.raises(asyncssh.SFTPError):
                async with sftp.open("/inbox/" + name, "wb") as f:
                    await f.write(b"x")

    _run(body())
    assert_nothing_changed(node, before)


# --- uploads that must not become bundles ------------------------------------------------------------


def test_oversized_upload_is_refused_and_discarded(node: NodeHarness, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(MAX_UPLOAD + 64 * 1024))
    before = snapshot(node)
    proc = openssh(node, MZ, tmp_path, f"put {big} /inbox/big.bundle\n")
    assert proc.returncode != 0

    async def body() -> None:
        async with node.asyncssh_connect(MZ) as conn, conn.start_sftp_client() as sftp:
            with pytest.raises(asyncssh.SFTPError):
                await sftp.put(str(big), "/inbox/big2.bundle")

    _run(body())
    assert "reason=E_TOO_LARGE" in node.log_text()
    assert_nothing_changed(node, before)


@pytest.mark.parametrize("gap", [64 * 1024, MAX_UPLOAD - 8192])  # below this node's size limit
def test_sparse_upload_is_refused_at_close_and_nothing_is_read(node: NodeHarness, gap: int) -> None:
    """A few kilobytes written at large offsets made an upload of gigabytes (apparent size)
    that the pipeline then read: now the close is refused (E_SPARSE), the partial is gone at
    once, nothing reaches incoming/ or quarantine/, and the next upload goes through."""
    before = snapshot(node)
    quarantine = node.spool.quarantine
    held = set(quarantine.iterdir())

    async def body() -> None:
        async with node.asyncssh_connect(MZ) as conn, conn.start_sftp_client() as sftp:
            with pytest.raises(asyncssh.SFTPError, match="holes"):
                async with sftp.open("/inbox/sparse.bundle", "wb") as f:
                    await f.write(b"x" * 4096, 0)
                    await f.write(b"y" * 4096, gap)

    _run(body())
    wait_until(
        lambda: "reason=E_SPARSE" in node.log_text(), timeout=10, what="the refusal in the log"
    )
    assert set(quarantine.iterdir()) == held
    assert_nothing_changed(node, before)


def test_quota_exceeding_upload_is_refused(node: NodeHarness, tmp_path: Path) -> None:
    data = tmp_path / "over-quota.bin"
    data.write_bytes(os.urandom(200_000))  # quota of 住建 is 100 000 bytes
    before = snapshot(node)
    proc = openssh(node, ZJ, tmp_path, f"put {data} /inbox/q.bundle\n")
    assert proc.returncode != 0
    assert "reason=E_QUOTA" in node.log_text()
    assert_nothing_changed(node, before)


def test_aborted_upload_leaves_nothing(node: NodeHarness, tmp_path: Path) -> None:
    """Kill the OpenSSH client mid-upload: the node discards the partial, records nothing."""
    require_binary("sftp")
    before = snapshot(node)
    client = _slow_upload(node, tmp_path)
    client.send_signal(signal.SIGKILL)
    client.wait(10)
    wait_until(lambda: node.partial_files() == [], timeout=15, what="the node to discard it")
    wait_until(
        lambda: "aborted (session ended before the file was closed)" in node.log_text(),
        timeout=10,
        what="the abort in the node's log",
    )
    assert_nothing_changed(node, before)


def _slow_upload(node: NodeHarness, tmp_path: Path) -> subprocess.Popen[bytes]:
    """Start an OpenSSH upload of 3 MiB at 2000 Kbit/s (~12 s) and wait until it is under way."""
    data = tmp_path / "slow.bin"
    if not data.exists():
        data.write_bytes(os.urandom(3 * 1024 * 1024))
    batch = tmp_path / "slow.txt"
    batch.write_text(f"put {data} /inbox/slow.bundle\n")
    proc = subprocess.Popen(
        node.sftp_argv(MZ, batch=batch, extra=["-l", "2000"]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def under_way() -> bool:
        return any(p.stat().st_size >= 64 * 1024 for p in node.partial_files())

    try:
        wait_until(under_way, timeout=20, what="the upload to be under way")
    except BaseException:
        proc.kill()
        proc.wait(10)
        raise
    return proc


def test_node_stopped_or_killed_mid_upload_keeps_nothing(tmp_path: Path) -> None:
    """SIGTERM mid-upload: clean exit, upload discarded. SIGKILL (a crash) mid-upload: the
    partial survives on disk until the next start, which removes it. Nothing is recorded."""
    require_binary("sftp")
    with NodeHarness(tmp_path / "life", [DeptSpec(MZ)]) as node:
        before = snapshot(node)
        client = _slow_upload(node, tmp_path)
        try:
            assert node.stop() == 0
        finally:
            client.kill()
            client.wait(10)
        assert node.partial_files() == []
        assert "aborted (session ended before the file was closed)" in node.log_text()

        node.start()
        client = _slow_upload(node, tmp_path)
        try:
            node.kill()
        finally:
            client.kill()
            client.wait(10)
        assert node.partial_files() != []  # a crash cannot clean up...
        node.start()
        assert node.partial_files() == []  # ...the next start does
        assert_nothing_changed(node, before)


def test_upload_abandoned_without_close_leaves_nothing(node: NodeHarness) -> None:
    """The SFTP session ends (or the connection drops) with the upload still open."""
    before = snapshot(node)

    async def end_session() -> None:
        async with node.asyncssh_connect(MZ) as conn:
            sftp = await conn.start_sftp_client()
            f = await sftp.open("/inbox/abandoned.bundle", "wb")
            await f.write(b"x" * 100_000)
            sftp.exit()  # close the SFTP channel; the file was never closed
            await sftp.wait_closed()
            wait_until(lambda: node.partial_files() == [], timeout=10, what="discard")

    async def drop_connection() -> None:
        conn = await node.asyncssh_connect(MZ)
        sftp = await conn.start_sftp_client()
        f = await sftp.open("/inbox/dropped.bundle", "wb")
        await f.write(b"y" * 100_000)
        conn.abort()

    _run(end_session())
    _run(drop_connection())
    assert_nothing_changed(node, before)


# --- protocol abuse ----------------------------------------------------------------------------


def test_garbage_packets_do_not_stop_the_node(node: NodeHarness) -> None:
    before = snapshot(node)
    # garbage instead of an SSH handshake, from a registered address
    with socket.create_connection((node.host, node.port), timeout=5) as s:
        s.settimeout(5)
        s.sendall(b"GET / HTTP/1.1\r\n\r\n" + os.urandom(4096))
        with pytest.raises((EOFError, ConnectionResetError)):  # the node closes the connection
            for _ in range(100):
                if not s.recv(4096):
                    raise EOFError

    class Session(asyncssh.SSHClientSession):  # type: ignore[type-arg]
        pass

    async def bad_sftp() -> None:
        async with node.asyncssh_connect(MZ) as conn:
            for junk in (
                b"\xff\xff\xff\xff" + os.urandom(64),  # absurd packet length
                b"\x00\x00\x00\x05\x01\x00\x00\x00\x03" + b"\x00\x00\x00\x02\x63\x00",  # trailing
                b"\x00\x00\x00\x01\x05",  # an OPEN before INIT, truncated
            ):
                chan, _ = await conn.create_session(Session, subsystem="sftp", encoding=None)
                chan.write(junk)
                await asyncio.wait_for(chan.wait_closed(), 10)

    _run(bad_sftp())
    assert_nothing_changed(node, before)


def test_shell_exec_and_forwarding_are_refused(node: NodeHarness) -> None:
    before = snapshot(node)

    async def body() -> None:
        async with node.asyncssh_connect(MZ) as conn:
            with pytest.raises((asyncssh.ChannelOpenError, asyncssh.ProcessError)):
                await conn.run("id", check=True)
            with pytest.raises(asyncssh.ChannelOpenError):
                await conn.open_connection("127.0.0.1", node.port)
            with pytest.raises(asyncssh.ChannelListenError):
                await conn.forward_remote_port("127.0.0.1", 0, "127.0.0.1", 22)

    _run(body())
    assert_nothing_changed(node, before)
