"""``exchange-client --transport paramiko`` against a real node: same behaviour as asyncssh."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from tests.integration.node_harness import DeptSpec, NodeHarness
from tests.integration.test_client_node import MZ, cli, init_args

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeHarness]:
    with NodeHarness(tmp_path_factory.mktemp("paramiko"), [DeptSpec(MZ)]) as h:
        yield h


def _init(node: NodeHarness, directory: Path) -> None:
    key = node.depts[MZ].ssh_key_path
    assert key is not None
    r = cli(*init_args(node, directory), "--ssh-key", key, "--transport", "paramiko")
    assert r.exit_code == 0, r.output
    assert 'transport = "paramiko"' in (directory / "client.toml").read_text()


def test_paramiko_push_wait_pull_and_host_key_pinned(node: NodeHarness, tmp_path: Path) -> None:
    client = tmp_path / "client"
    _init(node, client)
    data = tmp_path / "d.csv"
    data.write_text("id,name\n1,张三\n", encoding="utf-8")
    r = cli(
        "push", "--dir", client, "--kind", "recheck", "--wait", "--timeout", "30", "--json", data
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["verdict"] == "accepted"
    host = asyncssh.read_private_key(str(node.home / "node" / "ssh_host_ed25519_key"))
    pub = host.export_public_key().decode().split()[1]
    assert (client / "known_hosts").read_text().strip().endswith(f"ssh-ed25519 {pub}")
    r = cli("pull", "--dir", client, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["pulled"] == []  # the receipt came with --wait


def test_paramiko_refuses_a_changed_host_key(node: NodeHarness, tmp_path: Path) -> None:
    client = tmp_path / "client"
    _init(node, client)
    impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().split()
    (client / "known_hosts").write_text(f"[127.0.0.1]:{node.port} {impostor[0]} {impostor[1]}\n")
    before = len(node.uploads(MZ))
    data = tmp_path / "a.csv"
    data.write_text("x\n")
    r = cli("push", "--dir", client, "--kind", "data", data)
    assert r.exit_code == 5, r.output
    assert "(E_HOST_KEY)" in r.output
    assert len(node.uploads(MZ)) == before


def test_paramiko_with_x509_login_is_refused_at_init(node: NodeHarness, tmp_path: Path) -> None:
    client = tmp_path / "client"
    r = cli(*init_args(node, client), "--transport", "paramiko")
    assert r.exit_code == 3 and "SSH key only" in r.output
    assert not (client / "client.toml").exists()
