"""The node keeps its key: csr -> exchange-pki issue --csr --node -> init."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner, Result

from exchange_server.admin.cli import app
from exchange_server.config import load_config
from pki.ca_input import parse_csr
from pki.identity import DeptCode, Role
from pki.keys import certificate_pem
from tests.conftest import CAFixture


def _init(ca: CAFixture, home: Path, cert: Path, key: Path) -> Result:
    return CliRunner().invoke(app, [
        "init", "--home", str(home), "--trust", str(ca.dir / "root.pem"), "--cert", str(cert),
        "--key", str(key), "--crl", str(ca.dir / "crl.pem"),
    ])  # fmt: skip


def test_node_csr_issue_and_init(tmp_path: Path, test_ca: CAFixture) -> None:
    runner = CliRunner()
    key, csr = tmp_path / "node.key", tmp_path / "node.csr"
    res = runner.invoke(
        app, ["csr", "--code", "NODE01", "--name", "测试节点", "--key", str(key), "--out", str(csr)]
    )
    assert res.exit_code == 0, res.output
    assert key.stat().st_mode & 0o777 == 0o600
    issued = test_ca.ca.issue(
        DeptCode("NODE01"), "测试节点", [], role=Role.NODE, csr=parse_csr(csr.read_bytes())
    )
    assert issued.key is None  # the CA never saw the key
    cert = tmp_path / "node.pem"
    cert.write_bytes(certificate_pem(issued.chain))
    test_ca.ca.crl()
    res = _init(test_ca, tmp_path / "home", cert, key)
    assert res.exit_code == 0, res.output
    assert load_config(tmp_path / "home").code == "NODE01"
    # the node's state and spool are owner-only (the store holds who sent what; the spool
    # sealed personal data and, while a step runs, plaintext)
    home = tmp_path / "home"
    assert (home / "state.db").stat().st_mode & 0o777 == 0o600
    for folder in [home, home / "drop", home / "node", home / "spool", *(home / "spool").iterdir()]:
        assert folder.stat().st_mode & 0o777 == 0o700, folder
    # a second csr into the same files is refused and changes nothing
    before = key.read_bytes()
    res = runner.invoke(app, ["csr", "--code", "NODE01", "--key", str(key), "--out", str(csr)])
    assert res.exit_code == 3 and "refusing to overwrite" in res.output
    assert key.read_bytes() == before


def test_init_refuses_a_key_that_is_not_the_certificates(
    tmp_path: Path, test_ca: CAFixture
) -> None:
    runner = CliRunner()
    a = test_ca.issue("NODE01", "节点", role=Role.NODE)
    other = tmp_path / "other.key"
    runner.invoke(
        app, ["csr", "--code", "X", "--key", str(other), "--out", str(tmp_path / "x.csr")]
    )
    cert = tmp_path / "node.pem"
    cert.write_bytes(certificate_pem(a.chain))
    test_ca.ca.crl()
    res = _init(test_ca, tmp_path / "home", cert, other)
    assert res.exit_code == 3 and "E_KEY_MISMATCH" in res.output
    assert not (tmp_path / "home").exists()


def test_init_refuses_a_department_certificate(tmp_path: Path, test_ca: CAFixture) -> None:
    from exchange_common.fs import atomic_write
    from pki.keys import private_key_pem

    d = test_ca.issue("MZ330100", "民政")
    assert d.key is not None
    cert, key = tmp_path / "d.pem", tmp_path / "d.key"
    cert.write_bytes(certificate_pem(d.chain))
    atomic_write(key, private_key_pem(d.key, None), 0o600)
    test_ca.ca.crl()
    res = _init(test_ca, tmp_path / "home", cert, key)
    assert res.exit_code == 1 and "E_KEY_USAGE" in res.output
    assert not (tmp_path / "home").exists()
