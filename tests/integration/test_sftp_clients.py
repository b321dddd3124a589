"""Real SFTP clients against a real node process: OpenSSH ``sftp``, paramiko and asyncssh.

Each client logs in as 民政 (MZ330100) — with its registered SSH key, and for asyncssh also with
its ministry X.509 certificate (RFC 6187) — uploads a file into ``/inbox`` and the test then
finds the committed upload: an ``upload`` row of the right department and size, and the same
bytes in the spool. Each client also lists and downloads a file from ``/outbox``, byte for byte,
including the receipt the node's pipeline writes for the upload.

One node serves the whole module (see :mod:`tests.integration.node_harness`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exchange_server.store.models import Upload
from tests.integration.node_harness import DeptSpec, NodeHarness, require_binary, wait_until

pytestmark = [
    pytest.mark.integration,
    # asyncssh's X.509 support still calls pyOpenSSL APIs that warn; not ours to fix.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

MZ = "MZ330100"
TIMEOUT = 60


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeHarness]:
    with NodeHarness(
        tmp_path_factory.mktemp("sftp-clients"), [DeptSpec(MZ, "杭州市民政局")]
    ) as harness:
        yield harness


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    """A local file of ~300 KiB random bytes (several SFTP write requests, pipelined)."""
    path = tmp_path / "payload.bin"
    path.write_bytes(os.urandom(300 * 1024 + 17))
    return path


def _run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


def _assert_committed(node: NodeHarness, name: str, source: Path) -> Upload:
    """The upload named ``name`` is in the store (right department, size) and its bytes are
    in the spool (still in incoming/, or already quarantined by the pipeline)."""
    rows = [u for u in node.uploads(MZ) if u.file_name == name]
    assert len(rows) == 1, f"expected one upload named {name}, got {rows}"
    up = rows[0]
    assert up.dept_code == MZ
    assert up.source == "sftp"
    assert up.remote_addr == "127.0.0.1"
    assert up.size == source.stat().st_size
    stored = node.committed_file(up.id)
    assert stored is not None, "committed upload not found in the spool"
    assert (
        hashlib.sha256(stored.read_bytes()).digest() == hashlib.sha256(source.read_bytes()).digest()
    )
    assert node.partial_files() == []
    return up


def _receipt_of(node: NodeHarness, upload_id: str) -> str:
    """Wait for the pipeline to write the upload's receipt into the outbox; return its name."""

    def name() -> str | None:
        rows = [u for u in node.uploads(MZ) if u.id == upload_id]
        return rows[0].receipt_name if rows and rows[0].receipt_name else None

    receipt: str = wait_until(name, timeout=30, what=f"receipt for upload {upload_id}")
    assert (node.outbox(MZ) / receipt).is_file()
    return receipt


def _assert_pulled(node: NodeHarness, name: str) -> None:
    """The complete download of ``name`` was recorded as a pull (audited once) before the
    client's close returned, so it left the department's quota."""
    pulls = [e for e in node.audit("outbox.pulled") if json.loads(e.detail)["name"] == name]
    assert len(pulls) == 1 and pulls[0].subject == MZ


def _place_in_outbox(node: NodeHarness, name: str) -> bytes:
    data = os.urandom(70 * 1024 + 3)
    (node.outbox(MZ) / name).write_bytes(data)
    return data


# --- OpenSSH -----------------------------------------------------------------------------------


def _sftp_batch(node: NodeHarness, tmp_path: Path, commands: str, *extra: str) -> str:
    require_binary("sftp")
    batch = tmp_path / "batch.txt"
    batch.write_text(commands)
    proc = subprocess.run(
        node.sftp_argv(MZ, batch=batch, extra=extra),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, f"sftp failed: {proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_openssh_sftp_uploads_into_inbox(node: NodeHarness, payload: Path, tmp_path: Path) -> None:
    _sftp_batch(node, tmp_path, f"cd /inbox\nput {payload} openssh.bundle\n")
    _assert_committed(node, "openssh.bundle", payload)


def test_openssh_sftp_put_preserving_times(
    node: NodeHarness, payload: Path, tmp_path: Path
) -> None:
    # `put -p` sends fsetstat on the open handle: accepted and ignored.
    _sftp_batch(node, tmp_path, f"put -p {payload} /inbox/openssh-p.bundle\n")
    _assert_committed(node, "openssh-p.bundle", payload)


def test_openssh_sftp_lists_and_downloads_outbox(node: NodeHarness, tmp_path: Path) -> None:
    data = _place_in_outbox(node, "for-openssh.txt")
    out = tmp_path / "got.txt"
    listing = _sftp_batch(
        node, tmp_path, f"ls -1 /\nls -1 /outbox\nget /outbox/for-openssh.txt {out}\n"
    )
    assert "inbox" in listing and "outbox" in listing
    assert "for-openssh.txt" in listing
    assert out.read_bytes() == data
    _assert_pulled(node, "for-openssh.txt")


def test_openssh_sftp_downloads_its_receipt(
    node: NodeHarness, payload: Path, tmp_path: Path
) -> None:
    _sftp_batch(node, tmp_path, f"put {payload} /inbox/receipt-me.bundle\n")
    up = _assert_committed(node, "receipt-me.bundle", payload)
    receipt = _receipt_of(node, up.id)
    out = tmp_path / "receipt"
    _sftp_batch(node, tmp_path, f"get /outbox/{receipt} {out}\n")
    assert out.read_bytes() == (node.outbox(MZ) / receipt).read_bytes()


# --- paramiko ----------------------------------------------------------------------------------


def test_paramiko_uploads_into_inbox(node: NodeHarness, payload: Path) -> None:
    sftp = node.paramiko_sftp(MZ)
    try:
        # put() stats the file afterwards to confirm its size (the session still sees it)
        attrs = sftp.put(str(payload), "/inbox/paramiko.bundle", confirm=True)
        assert attrs.st_size == payload.stat().st_size
    finally:
        sftp.get_channel().get_transport().close()
    _assert_committed(node, "paramiko.bundle", payload)


def test_paramiko_lists_and_downloads_outbox(node: NodeHarness, tmp_path: Path) -> None:
    data = _place_in_outbox(node, "for-paramiko.txt")
    sftp = node.paramiko_sftp(MZ)
    try:
        assert sorted(sftp.listdir("/")) == ["inbox", "outbox"]
        assert "for-paramiko.txt" in sftp.listdir("/outbox")
        out = tmp_path / "got.txt"
        sftp.get("/outbox/for-paramiko.txt", str(out))
    finally:
        sftp.get_channel().get_transport().close()
    assert out.read_bytes() == data
    _assert_pulled(node, "for-paramiko.txt")


# --- asyncssh ----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["ssh-key", "x509"])
def test_asyncssh_uploads_into_inbox(node: NodeHarness, payload: Path, method: str) -> None:
    name = f"asyncssh-{method}.bundle"

    async def body() -> None:
        async with node.asyncssh_connect(MZ, method=method) as conn:
            assert conn.get_extra_info("username") == MZ
            async with conn.start_sftp_client() as sftp:
                await sftp.put(str(payload), f"/inbox/{name}")

    _run(body())
    _assert_committed(node, name, payload)
    ok = [e for e in node.audit("login.ok") if '"x509"' in e.detail]
    if method == "x509":
        assert ok, "an X.509 login is recorded as such in the audit trail"


@pytest.mark.parametrize("method", ["ssh-key", "x509"])
def test_asyncssh_lists_and_downloads_outbox(
    node: NodeHarness, tmp_path: Path, method: str
) -> None:
    name = f"for-asyncssh-{method}.txt"
    data = _place_in_outbox(node, name)
    out = tmp_path / "got.txt"

    async def body() -> list[str]:
        async with (
            node.asyncssh_connect(MZ, method=method) as conn,
            conn.start_sftp_client() as sftp,
        ):
            assert sorted(await sftp.listdir("/")) == [".", "..", "inbox", "outbox"]
            names: list[str] = await sftp.listdir("/outbox")
            await sftp.get(f"/outbox/{name}", str(out))
            return names

    names = _run(body())
    assert name in names
    assert out.read_bytes() == data
    _assert_pulled(node, name)


def test_departments_of_an_intermediate_ca_log_in(tmp_path: Path, payload: Path) -> None:
    """With an issuing CA under the root, the node's trust file holds only the root: both kinds
    of login still verify the department's registered certificate up to it."""
    with NodeHarness(tmp_path / "ica", [DeptSpec(MZ)], intermediate=True) as node:

        async def body(method: str) -> None:
            async with (
                node.asyncssh_connect(MZ, method=method) as conn,
                conn.start_sftp_client() as sftp,
            ):
                await sftp.put(str(payload), f"/inbox/ica-{method}.bundle")

        _run(body("x509"))
        _run(body("ssh-key"))
        for method in ("x509", "ssh-key"):
            _assert_committed(node, f"ica-{method}.bundle", payload)


def test_lftp_uploads_when_installed(node: NodeHarness, payload: Path, tmp_path: Path) -> None:
    lftp = require_binary("lftp")
    key = node.depts[MZ].ssh_key_path
    connect = (
        f"ssh -F /dev/null -a -x -oBatchMode=yes -oStrictHostKeyChecking=no "
        f"-oUserKnownHostsFile=/dev/null -oIdentitiesOnly=yes -i {key}"
    )
    script = (
        f"set sftp:connect-program '{connect}'; "
        f"open -u {MZ}, -p {node.port} sftp://127.0.0.1; "
        f"put {payload} -o /inbox/lftp.bundle; bye"
    )
    proc = subprocess.run(
        [lftp, "-c", script], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert proc.returncode == 0, proc.stderr
    _assert_committed(node, "lftp.bundle", payload)


def test_node_keeps_serving_and_logs_no_payload(node: NodeHarness) -> None:
    assert node.running
    log = node.log_text()
    assert "login ok: address=127.0.0.1 user=MZ330100" in log
    assert "Traceback" not in log


# --- every client: a real bundle in, its signed receipt out ------------------------------------


def _client_round_trip(node: NodeHarness, client: str, local: Path, name: str, out: Path) -> None:
    """Upload ``local`` as /inbox/``name`` with ``client``, then download its receipt to ``out``."""
    if client == "openssh":
        _sftp_batch(node, out.parent, f"put {local} /inbox/{name}\n")
    elif client == "paramiko":
        sftp = node.paramiko_sftp(MZ)
        try:
            sftp.put(str(local), f"/inbox/{name}")
        finally:
            sftp.get_channel().get_transport().close()
    else:
        method = client.removeprefix("asyncssh-")

        async def put() -> None:
            async with (
                node.asyncssh_connect(MZ, method=method) as conn,
                conn.start_sftp_client() as sftp,
            ):
                await sftp.put(str(local), f"/inbox/{name}")

        _run(put())
    [up] = [u for u in node.uploads(MZ) if u.file_name == name]
    receipt = _receipt_of(node, up.id)
    if client == "openssh":
        _sftp_batch(node, out.parent, f"get /outbox/{receipt} {out}\n")
    elif client == "paramiko":
        sftp = node.paramiko_sftp(MZ)
        try:
            sftp.get(f"/outbox/{receipt}", str(out))
        finally:
            sftp.get_channel().get_transport().close()
    else:

        async def get() -> None:
            async with (
                node.asyncssh_connect(MZ, method=method) as conn,
                conn.start_sftp_client() as sftp,
            ):
                await sftp.get(f"/outbox/{receipt}", str(out))

        _run(get())


@pytest.mark.parametrize("client", ["openssh", "paramiko", "asyncssh-ssh-key", "asyncssh-x509"])
def test_client_uploads_a_bundle_and_downloads_its_signed_receipt(
    node: NodeHarness, tmp_path: Path, client: str
) -> None:
    import datetime as dt
    import json

    from pki.bundle import open_bundle, verify
    from pki.keys import load_certificates, load_private_key

    bundle = node.seal(MZ, "户籍编号,类型\n1,低保\n".encode(), tmp_path / "b.bundle")
    out = tmp_path / "receipt.bundle"
    _client_round_trip(node, client, bundle, f"e2e-{client}.bundle", out)
    with node.node() as n:
        trust = n.trust()
    now = dt.datetime.now(dt.UTC)
    assert verify(out, trust, now=now).sender.code == "NODE01"  # signed by the node
    cred = node.depts[MZ]
    opened = open_bundle(
        out,
        tmp_path / "r",
        recipient_key=load_private_key(cred.key_path),
        recipient_cert=load_certificates(cred.cert_path)[0],
        trust=trust,
        now=now,
    )
    body = json.loads((tmp_path / "r" / "receipt.json").read_text(encoding="utf-8"))
    assert body == opened.manifest.fields
    assert body["verdict"] == "accepted", body
    assert body["file_sha256"] == hashlib.sha256(bundle.read_bytes()).hexdigest()
