"""``exchange-client`` against a real node (``exchange-server serve``) built by NodeHarness.

One node for the module; each test uses its own client directory unless it needs the shared
one. The CLI runs in-process through typer's CliRunner.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest
from typer.testing import CliRunner, Result

from exchange_client.cli import app
from exchange_client.config import load_config, save_config
from exchange_client.credentials import load_credentials
from exchange_client.push import SealedBundle, seal_files, upload_bundle, wait_for_receipt
from exchange_client.state import PushedBundle, locked_state, read_state
from pki.bundle import BundleKind, Member, seal_to_file
from pki.identity import DeptCode, parse_networks
from pki.keys import certificate_pem, load_certificates, load_private_key, private_key_pem
from tests.integration.node_harness import DeptSpec, NodeHarness, free_loopback_port, wait_until

pytestmark = pytest.mark.integration

MZ, RS = "MZ330100", "RS330100"
runner = CliRunner()


def cli(*args: str) -> Result:
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeHarness]:
    with NodeHarness(tmp_path_factory.mktemp("node"), [DeptSpec(MZ), DeptSpec(RS)]) as h:
        yield h


def init_args(
    node: NodeHarness, directory: Path, code: str = MZ, port: int | None = None
) -> list[str]:
    cred = node.depts[code]
    assert node.ca is not None
    return [
        "init",
        "--dir", str(directory),
        "--dept", code,
        "--node-host", node.host,
        "--node-port", str(port if port is not None else node.port),
        "--trust", str(node.ca.dir / "root.pem"),
        "--crl", str(node.ca.dir / "crl.pem"),
        "--cert", str(cred.cert_path),
        "--key", str(cred.key_path),
        "--node-cert", str(node.root / "creds" / "NODE01.pem"),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def mz_dir(node: NodeHarness, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("mz") / "client"
    r = cli(*init_args(node, directory))
    assert r.exit_code == 0, r.output
    return directory


def test_push_data_wait_accepted_and_host_key_pinned(
    node: NodeHarness, mz_dir: Path, tmp_path: Path
) -> None:
    data = tmp_path / "households-张三.csv"
    data.write_text("id,name\n1,张三\n", encoding="utf-8")
    r = cli(
        "push", "--dir", mz_dir, "--kind", "recheck", "--wait", "--timeout", "30", "--json", data
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["verdict"] == "accepted" and out["kind"] == "recheck"
    assert (mz_dir / "sent" / f"{out['bundle_id']}.bundle").is_file()
    # The receipt was downloaded, verified (signed by the pinned node) and opened.
    state = read_state(mz_dir / "state.json")
    receipts = [p for p in state.pulled.values() if p.receipt_for == out["bundle_id"]]
    assert receipts and receipts[0].status == "opened" and receipts[0].verdict == "accepted"
    opened = mz_dir / "received" / "receipt" / str(receipts[0].bundle_id) / "receipt.json"
    assert json.loads(opened.read_text())["bundle_id"] == out["bundle_id"]
    # Trust on first use: the node's real host key is pinned in OpenSSH format.
    host_key = asyncssh.read_private_key(str(node.home / "node" / "ssh_host_ed25519_key"))
    pub = host_key.export_public_key().decode().split()[1]
    line = (mz_dir / "known_hosts").read_text().strip()
    assert line.startswith(f"[127.0.0.1]:{node.port} ssh-ed25519 {pub}")


def test_push_query_then_pull_and_no_second_download(
    node: NodeHarness, mz_dir: Path, tmp_path: Path
) -> None:
    persons = tmp_path / "persons.csv"
    persons.write_text("身份证号,姓名,授权编号\n330102199001011234,张三,SQ-1\n", encoding="utf-8")
    r = cli(
        "push", "--dir", mz_dir, "--kind", "query", "--field", "purpose=低保审核", "--json", persons
    )
    assert r.exit_code == 0, r.output
    bundle_id = json.loads(r.stdout)["bundle_id"]
    assert read_state(mz_dir / "state.json").pushed[bundle_id].verdict == "waiting"
    outbox = node.outbox(MZ)
    known = set(read_state(mz_dir / "state.json").pulled)
    wait_until(lambda: {p.name for p in outbox.iterdir()} - known, timeout=20, what="a new receipt")
    r = cli("pull", "--dir", mz_dir, "--json")
    assert r.exit_code == 0, r.output
    pulled = json.loads(r.stdout)["pulled"]
    assert pulled and all(p["status"] == "opened" for p in pulled)
    assert any(p.get("receipt_for") == bundle_id for p in pulled)
    for p in pulled:  # what we kept is byte for byte what the node wrote
        assert (mz_dir / "pulled" / p["name"]).read_bytes() == (outbox / p["name"]).read_bytes()
    assert read_state(mz_dir / "state.json").pushed[bundle_id].verdict in ("accepted", "rejected")
    again = cli("pull", "--dir", mz_dir, "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["pulled"] == []


def test_status_json_has_no_member_names(mz_dir: Path) -> None:
    r = cli("status", "--dir", mz_dir, "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["dept"] == MZ
    assert {p["kind"] for p in data["pushed"]} >= {"recheck", "query"}
    assert all(p["verdict"] in ("accepted", "rejected", "waiting") for p in data["pushed"])
    assert "张三" not in r.stdout and "households" not in r.stdout and "persons" not in r.stdout
    table = cli("status", "--dir", mz_dir)
    assert table.exit_code == 0 and "张三" not in table.stdout


def test_rejected_push_exits_1_with_reason(node: NodeHarness, mz_dir: Path, tmp_path: Path) -> None:
    """A bundle signed by another department, uploaded under MZ's login: the node says E_SIGNER."""
    cfg = load_config(mz_dir)
    rs = node.depts[RS]
    src = tmp_path / "x.csv"
    src.write_text("a\n1\n")
    bundle_id = uuid.uuid4()
    path = cfg.folder("sent") / f"{bundle_id}.bundle"
    now = dt.datetime.now(dt.UTC)
    result = seal_to_file(
        [Member("x.csv", src)],
        path,
        signer_key=load_private_key(rs.key_path),
        signer_chain=load_certificates(rs.cert_path),
        recipients=load_certificates(cfg.node_cert)[:1],
        kind="data",
        now=now,
        bundle_id=bundle_id,
    )
    record = PushedBundle(
        str(bundle_id), "data", "2026-01-01T00:00:00Z", 1, result.length, result.sha256
    )
    with locked_state(cfg.state_path) as state:
        state.pushed[record.bundle_id] = record
    upload_bundle(cfg, SealedBundle(path, record))
    r = cli("wait", "--dir", mz_dir, str(bundle_id), "--timeout", "30")
    assert r.exit_code == 1, r.output
    assert "REJECTED" in r.stdout and "E_SIGNER" in r.stdout


def test_replayed_upload_keeps_accepted_verdict(mz_dir: Path, tmp_path: Path) -> None:
    cfg = load_config(mz_dir)
    creds = load_credentials(cfg)
    src = tmp_path / "d.csv"
    src.write_text("a\n2\n")
    sealed = seal_files(cfg, creds, [src], BundleKind.RECHECK, {}, now=dt.datetime.now(dt.UTC))
    upload_bundle(cfg, sealed)
    upload_bundle(cfg, sealed)  # e.g. a retry after the first upload's acknowledgement was lost
    deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
    while True:
        rec, _ = wait_for_receipt(
            cfg, creds, sealed.record.bundle_id, cfg.dir / "received", timeout=30
        )
        if len(rec.receipts) == 2 or dt.datetime.now(dt.UTC) > deadline:
            break
    assert rec.verdict == "accepted" and len(rec.receipts) == 2
    verdicts = {
        p.verdict: p
        for p in read_state(cfg.state_path).pulled.values()
        if p.receipt_for == rec.bundle_id
    }
    assert set(verdicts) == {"accepted", "rejected"}


def test_node_unreachable_exits_5(node: NodeHarness, tmp_path: Path) -> None:
    directory = tmp_path / "client"
    assert cli(*init_args(node, directory, port=free_loopback_port())).exit_code == 0
    data = tmp_path / "a.csv"
    data.write_text("x\n")
    r = cli("push", "--dir", directory, "--kind", "data", "--retries", "1", data)
    assert r.exit_code == 5, r.output
    assert "cannot reach the node" in r.output and "(E_UNREACHABLE)" in r.output
    assert "Traceback" not in r.output
    r = cli("pull", "--dir", directory, "--retries", "0")
    assert r.exit_code == 5 and "E_UNREACHABLE" in r.output


def test_changed_host_key_refused_exits_5(node: NodeHarness, tmp_path: Path) -> None:
    directory = tmp_path / "client"
    assert cli(*init_args(node, directory)).exit_code == 0
    impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().split()
    (directory / "known_hosts").write_text(f"[127.0.0.1]:{node.port} {impostor[0]} {impostor[1]}\n")
    before = len(node.uploads(MZ))
    data = tmp_path / "a.csv"
    data.write_text("x\n")
    r = cli("push", "--dir", directory, "--kind", "data", data)
    assert r.exit_code == 5, r.output
    assert "host key has CHANGED" in r.output and "(E_HOST_KEY)" in r.output
    assert len(node.uploads(MZ)) == before
    assert len((directory / "known_hosts").read_text().splitlines()) == 1  # pin unchanged


def test_expired_own_certificate_refused(node: NodeHarness, tmp_path: Path) -> None:
    directory = tmp_path / "client"
    assert cli(*init_args(node, directory)).exit_code == 0
    assert node.ca is not None
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    issued = node.ca.issue(
        DeptCode(MZ), "测试部门", parse_networks(["127.0.0.1"]), now=past, days=1, renew=True
    )
    assert issued.key is not None
    cert, key = tmp_path / "old.pem", tmp_path / "old.key"
    cert.write_bytes(certificate_pem(issued.chain))
    key.write_bytes(private_key_pem(issued.key, None))
    save_config(load_config(directory).with_changes(cert=cert, key=key))
    before = len(node.uploads(MZ))
    data = tmp_path / "a.csv"
    data.write_text("x\n")
    r = cli("push", "--dir", directory, "--kind", "data", data)
    assert r.exit_code != 0, r.output
    assert "refusing to push" in r.output and "(E_EXPIRED)" in r.output
    assert len(node.uploads(MZ)) == before
    assert not (directory / "sent").exists() or not any((directory / "sent").iterdir())
