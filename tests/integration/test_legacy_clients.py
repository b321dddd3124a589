"""Clients without AES-GCM against a default node (decision 0009): curl (libssh2 1.10, Debian
12's) uploads a bundle and downloads its receipt, while OpenSSH keeps AES-GCM.

The node reads each client's SSH version string before it offers ciphers: clients that always
offer AES-GCM (OpenSSH, paramiko, AsyncSSH) are offered AES-GCM only, any other client also
AES-CTR.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from tests.integration.node_harness import DeptSpec, NodeHarness, require_binary, wait_until

pytestmark = pytest.mark.integration

MZ = "MZ330100"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeHarness]:
    with NodeHarness(tmp_path_factory.mktemp("legacy"), [DeptSpec(MZ)]) as harness:
        yield harness


def _curl(node: NodeHarness, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    curl = require_binary("curl")
    if "sftp" not in subprocess.run([curl, "-V"], capture_output=True, text=True).stdout:
        pytest.skip("this curl has no SFTP support")
    key = node.depts[MZ].ssh_key_path
    assert key is not None
    pub = tmp / "id.pub"
    pub.write_bytes(asyncssh.read_private_key(str(key)).export_public_key())
    return subprocess.run(
        [curl, "-sS", "--insecure", "--user", f"{MZ}:", "--key", str(key), "--pubkey", str(pub),
         "--connect-timeout", "10", "--max-time", "60", *args],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip


def test_curl_libssh2_uploads_a_bundle_and_downloads_its_receipt(
    node: NodeHarness, tmp_path: Path
) -> None:
    bundle = node.seal(MZ, b"id,name\n1,x\n", tmp_path / "b.bundle", kind="file")
    url = f"sftp://{node.host}:{node.port}"
    up = _curl(node, tmp_path, "-T", str(bundle), f"{url}/inbox/curl-{uuid.uuid4().hex[:8]}.bundle")
    assert up.returncode == 0, up.stderr
    wait_until(lambda: any(node.outbox(MZ).glob("receipt-*.bundle")), timeout=30, what="receipt")
    (receipt,) = node.outbox(MZ).glob("receipt-*.bundle")
    got = tmp_path / "receipt.bundle"
    down = _curl(node, tmp_path, "-o", str(got), f"{url}/outbox/{receipt.name}")
    assert down.returncode == 0, down.stderr
    assert got.read_bytes() == receipt.read_bytes()


def test_openssh_still_negotiates_aes_gcm(node: NodeHarness, tmp_path: Path) -> None:
    batch = tmp_path / "batch.txt"
    batch.write_text("ls /\n")
    argv = node.sftp_argv(MZ, batch=batch, extra=["-v", "-oLogLevel=DEBUG1"])
    run = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "cipher: aes128-gcm@openssh.com" in run.stderr
    assert "-ctr" not in " ".join(line for line in run.stderr.splitlines() if "cipher:" in line)
