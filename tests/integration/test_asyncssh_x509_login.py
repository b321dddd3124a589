"""asyncssh accepts a ministry certificate for X.509 SSH login (RFC 6187), and only that.

A small asyncssh server on 127.0.0.1 trusts the ministry root (``x509_trusted_certs`` plus an
``authorized_client_keys`` ``cert-authority`` entry for it); a department logs in as its
department code — the SAN rfc822Name asyncssh matches the user name against — with the key and
certificate chain the CA issued. asyncssh does no revocation check: that is the node's job and
not tested here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from pki.keys import certificate_pem, private_key_pem
from tests.conftest import CAFixture, make_ca

pytest.importorskip("OpenSSL", reason="asyncssh's X.509 support needs pyOpenSSL")

pytestmark = [
    pytest.mark.integration,
    # asyncssh still calls pyOpenSSL APIs that warn; not ours to fix.
    pytest.mark.filterwarnings("ignore:X509.get_:DeprecationWarning"),
]

TIMEOUT = 30


def _write_identity(ca: CAFixture, dept: str, tmp: Path) -> tuple[Path, Path]:
    """Issue ``dept`` a certificate; write its key and chain as a department would hold them."""
    issued = ca.issue(dept, "测试部门", ("127.0.0.1",))
    assert issued.key is not None
    key, chain = tmp / f"{dept}.key", tmp / f"{dept}.pem"
    key.write_bytes(private_key_pem(issued.key, None))
    key.chmod(0o600)
    chain.write_bytes(certificate_pem(issued.chain))  # leaf, then the intermediate if any
    return key, chain


class _Server(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return True  # authentication is always required

    def password_auth_supported(self) -> bool:
        return False


async def _whoami(process: Any) -> None:
    process.stdout.write(process.get_extra_info("username") + "\n")
    process.exit(0)


async def _with_server(ca: CAFixture, root: Path, body: Callable[[int], Awaitable[None]]) -> None:
    trusted = certificate_pem(ca.ca.root)
    ssh_root = asyncssh.import_certificate(trusted)
    authorized = asyncssh.import_authorized_keys(
        "cert-authority " + ssh_root.export_certificate("openssh").decode()
    )
    server = await asyncssh.create_server(
        _Server,
        "127.0.0.1",
        0,
        server_host_keys=[asyncssh.generate_private_key("ssh-ed25519")],
        x509_trusted_certs=[trusted],
        authorized_client_keys=authorized,
        process_factory=_whoami,
        sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=str(root).encode()),
    )
    try:
        port = server.sockets[0].getsockname()[1]
        await asyncio.wait_for(body(port), TIMEOUT)
    finally:
        server.close()
        await server.wait_closed()


def _connect(port: int, user: str, key: Path, chain: Path) -> Any:
    return asyncssh.connect(
        "127.0.0.1",
        port,
        username=user,
        client_keys=[(str(key), str(chain))],
        known_hosts=None,
        agent_path=None,
        preferred_auth="publickey",
        config=None,
    )


@pytest.fixture(params=["root-only", "intermediate"])
def any_ca(request: pytest.FixtureRequest) -> CAFixture:
    name = "test_ca" if request.param == "root-only" else "inter_ca"
    fx: CAFixture = request.getfixturevalue(name)
    return fx


def test_department_logs_in_with_its_certificate(any_ca: CAFixture, tmp_path: Path) -> None:
    key, chain = _write_identity(any_ca, "MZ330100", tmp_path)
    (tmp_path / "sftp-root").mkdir()

    async def body(port: int) -> None:
        async with _connect(port, "MZ330100", key, chain) as conn:
            result = await conn.run("whoami", check=True)
            assert result.stdout == "MZ330100\n"
            async with conn.start_sftp_client() as sftp:
                async with sftp.open("hello.txt", "w") as f:
                    await f.write("你好")
                assert sorted(await sftp.listdir(".")) == [".", "..", "hello.txt"]

    asyncio.run(_with_server(any_ca, tmp_path / "sftp-root", body))
    assert (tmp_path / "sftp-root" / "hello.txt").read_text("utf-8") == "你好"


def test_certificate_of_another_ca_is_refused(test_ca: CAFixture, tmp_path: Path) -> None:
    other = make_ca(tmp_path / "other-ca")
    try:
        key, chain = _write_identity(other, "MZ330100", tmp_path)
    finally:
        other.ca.close()
    (tmp_path / "sftp-root").mkdir()

    async def body(port: int) -> None:
        with pytest.raises(asyncssh.PermissionDenied):
            async with _connect(port, "MZ330100", key, chain):
                pass

    asyncio.run(_with_server(test_ca, tmp_path / "sftp-root", body))


def test_login_name_must_be_the_certificate_principal(inter_ca: CAFixture, tmp_path: Path) -> None:
    """A department's certificate does not open another department's account."""
    key, chain = _write_identity(inter_ca, "MZ330100", tmp_path)
    (tmp_path / "sftp-root").mkdir()

    async def body(port: int) -> None:
        for user in ("RS330100", "root", "mz330100"):
            with pytest.raises(asyncssh.PermissionDenied):
                async with _connect(port, user, key, chain):
                    pass
        # The control: the right name with the same files works.
        async with _connect(port, "MZ330100", key, chain) as conn:
            assert (await conn.run("whoami", check=True)).stdout == "MZ330100\n"

    asyncio.run(_with_server(inter_ca, tmp_path / "sftp-root", body))
