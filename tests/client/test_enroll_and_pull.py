"""init (certificates, new key + CSR, import), field parsing, outbox-name safety, offline
verify/open through the CLI, and that a download not signed by the pinned node is never opened."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from exchange_client.cli import app
from exchange_client.config import load_config
from exchange_client.credentials import load_credentials
from exchange_client.pull import process_download, safe_outbox_name
from exchange_client.push import parse_fields
from exchange_client.state import State
from exchange_common.errors import InputError
from pki.bundle import Member, seal_to_file
from pki.ca_input import parse_csr
from pki.identity import DeptCode, parse_networks
from pki.keys import certificate_pem
from tests.client.clientdir import init
from tests.conftest import CAFixture

runner = CliRunner()


def test_init_pins_node_and_refuses_second_init(world: dict[str, Path]) -> None:
    args = init(world, "--cert", str(world["cert"]), "--key", str(world["key"]), "--json")
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    cfg = load_config(world["dir"])
    assert json.loads(r.stdout)["node_fingerprint"] == cfg.node_fingerprint
    assert (world["dir"] / "node.pem").read_bytes() == world["node_cert"].read_bytes()
    assert cfg.login == "x509"
    again = runner.invoke(app, args)
    assert again.exit_code == 3 and "(E_EXISTS)" in again.output


def test_init_refuses_a_department_cert_as_node(world: dict[str, Path]) -> None:
    args = init(world, "--cert", str(world["cert"]), "--key", str(world["key"]))
    args[args.index("--node-cert") + 1] = str(world["cert"])
    r = runner.invoke(app, args)
    assert r.exit_code == 1 and "E_KEY_USAGE" in r.output
    assert not (world["dir"] / "client.toml").exists()


def test_init_needs_options(world: dict[str, Path]) -> None:
    r = runner.invoke(app, ["init", "--dir", str(world["dir"])])
    assert r.exit_code == 3 and "--dept" in r.output and "Traceback" not in r.output


def test_new_key_csr_then_import(world: dict[str, Path], test_ca: CAFixture) -> None:
    r = runner.invoke(app, init(world, "--new-key"))
    assert r.exit_code == 0, r.output
    key = world["dir"] / "MZ330100.key"
    csr = world["dir"] / "MZ330100.csr"
    assert key.stat().st_mode & 0o777 == 0o600
    parsed = parse_csr(csr.read_bytes())
    assert load_config(world["dir"]).cert is None
    # Without a certificate the client refuses to push, saying what to do.
    data = world["dir"].parent / "a.csv"
    data.write_text("x\n")
    r = runner.invoke(app, ["push", "--dir", str(world["dir"]), "--kind", "data", str(data)])
    assert r.exit_code == 3 and "(E_NO_CERT)" in r.output
    # The ministry issues for the CSR; the department imports it.
    issued = test_ca.ca.issue(
        DeptCode("MZ330100"), "测试部门", parse_networks(["127.0.0.1"]), csr=parsed, renew=True
    )
    answer = world["dir"].parent / "answer.pem"
    answer.write_bytes(certificate_pem(issued.chain))
    r = runner.invoke(app, ["init", "--dir", str(world["dir"]), "--import-cert", str(answer)])
    assert r.exit_code == 0, r.output
    cfg = load_config(world["dir"])
    assert cfg.cert == world["dir"] / "MZ330100.pem"
    load_credentials(cfg)  # key and certificate belong together


def test_import_of_someone_elses_cert_refused(world: dict[str, Path]) -> None:
    assert runner.invoke(app, init(world, "--new-key")).exit_code == 0
    r = runner.invoke(
        app, ["init", "--dir", str(world["dir"]), "--import-cert", str(world["cert"])]
    )
    assert r.exit_code == 3 and "(E_KEY_MISMATCH)" in r.output


def test_parse_fields(tmp_path: Path) -> None:
    f = tmp_path / "f.json"
    f.write_text('{"purpose": "x", "persons": 3}')
    assert parse_fields(["purpose=低保审核", "range=2026/01/01-2026/06/30"], f) == {
        "purpose": "低保审核",
        "persons": 3,
        "range": "2026/01/01-2026/06/30",
    }
    with pytest.raises(InputError):
        parse_fields(["novalue"], None)
    f.write_text('{"amount": 1.5}')
    with pytest.raises(InputError, match="decimal"):
        parse_fields([], f)


@pytest.mark.parametrize(
    "name", ["", ".", "..", ".hidden", "a/b", "a\\b", "x\x00", "rtl\u202egpj.exe", "x" * 256]
)
def test_unsafe_outbox_names(name: str) -> None:
    assert not safe_outbox_name(name)


def test_safe_outbox_name() -> None:
    assert safe_outbox_name("receipt-6f1c.bundle")


def test_bundle_not_from_pinned_node_is_kept_apart_never_opened(world: dict[str, Path]) -> None:
    """The attack: a valid department signs a fake 'receipt' and it lands in our outbox."""
    args = init(world, "--cert", str(world["cert"]), "--key", str(world["key"]))
    assert runner.invoke(app, args).exit_code == 0
    cfg = load_config(world["dir"])
    creds = load_credentials(cfg)
    src = world["dir"].parent / "r.json"
    src.write_text('{"verdict": "accepted"}')
    download = world["dir"] / "fake.bundle"
    seal_to_file(
        [Member("receipt.json", src)],
        download,
        signer_key=creds.key,
        signer_chain=list(creds.chain),
        recipients=[creds.cert],
        kind="receipt",
        fields={"bundle_id": "x", "verdict": "accepted"},
        now=dt.datetime.now(dt.UTC),
    )
    state = State()
    out = world["dir"] / "received"
    outcome = process_download(
        cfg, creds, state, "receipt-x.bundle", download, out, dt.datetime.now(dt.UTC)
    )
    assert outcome.status == "rejected" and outcome.reason_code == "E_NOT_NODE"
    assert not out.exists()
    kept = world["dir"] / "rejected" / "receipt-x.bundle"
    assert kept.is_file()
    reason = json.loads((kept.parent / "receipt-x.bundle.reason.json").read_text())
    assert reason["reason_code"] == "E_NOT_NODE"
    assert state.pulled["receipt-x.bundle"].status == "rejected"

    # Offline verify says who signed it; open works with our key (it is addressed to us).
    r = runner.invoke(app, ["verify", "--dir", str(world["dir"]), str(kept), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["sender_is_pinned_node"] is False
    r = runner.invoke(app, ["open", "--dir", str(world["dir"]), "--out", str(out), str(kept)])
    assert r.exit_code == 0, r.output
    assert (out / "receipt.json").is_file()


def test_every_command_help_has_examples() -> None:
    for cmd in ("init", "push", "pull", "status", "verify", "open", "wait"):
        r = runner.invoke(app, [cmd, "--help"])
        assert r.exit_code == 0 and "Examples" in r.stdout, cmd
