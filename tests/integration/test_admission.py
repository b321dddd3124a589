"""Admission and inspection (部省 第六条), both sides, against a real node: the department's
``exchange-client selftest`` (credentials, certificates, address, login, a sealed probe's round
trip) and the node's ``exchange-server dept check`` (registration, certificate, CRL, access,
logins, the probe) each print a report to file; what fails is named."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from exchange_client.cli import app as client_app
from exchange_client.config import load_config
from exchange_server.admin.cli import app as server_app
from tests.integration.node_harness import DeptSpec, NodeHarness, free_loopback_port
from tests.integration.test_client_node import init_args

pytestmark = pytest.mark.integration

MZ, RS = "MZ330100", "RS330100"
runner = CliRunner()


def client(*args: str) -> Result:
    return runner.invoke(client_app, [str(a) for a in args])


def server(node: NodeHarness, *args: str) -> Result:
    return runner.invoke(server_app, ["dept", "check", *args, "--home", str(node.home)])


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeHarness]:
    with NodeHarness(tmp_path_factory.mktemp("node"), [DeptSpec(MZ), DeptSpec(RS)]) as h:
        yield h


def _verdicts(doc: dict) -> dict[str, str]:  # type: ignore[type-arg]
    return {c["name"]: c["verdict"] for c in doc["checks"]}


def test_before_the_selftest_the_node_names_what_is_missing(node: NodeHarness) -> None:
    r = server(node, RS, "--json")
    assert r.exit_code == 1, r.output
    doc = json.loads(r.stdout)
    assert doc["schema"] == "exchange-dept-check/1" and doc["passed"] is False
    v = _verdicts(doc)
    assert v["registration"] == v["certificate"] == v["node CRL"] == "pass"
    assert v["round trip"] == "fail" and v["logins"] == "warn"
    assert "exchange-client selftest" in next(
        c["detail"] for c in doc["checks"] if c["name"] == "round trip"
    )


def test_selftest_passes_and_the_node_sees_its_probe(node: NodeHarness, tmp_path: Path) -> None:
    directory = tmp_path / "mz"
    assert client(*init_args(node, directory)).exit_code == 0
    report = tmp_path / "selftest.txt"
    r = client("selftest", "--dir", str(directory), "--out", str(report), "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["schema"] == "exchange-selftest/1" and doc["overall"] in ("pass", "warn")
    assert set(_verdicts(doc).values()) <= {"pass", "warn"}
    assert _verdicts(doc)["round trip"] == "pass" and _verdicts(doc)["login"] == "pass"
    text = report.read_text("utf-8")
    assert text.startswith(f"exchange-client selftest of {MZ}") and "overall: PASS" in text
    assert "[PASS] round trip" in text
    # the node's side: the probe, accepted with its receipt, and the login
    check_file = tmp_path / "admission.txt"
    r = server(node, MZ, "--out", str(check_file))
    assert r.exit_code == 0, r.output
    assert "[PASS] round trip" in r.stdout and "accepted, its signed receipt sent" in r.stdout
    assert "[PASS] logins" in r.stdout and "with x509" in r.stdout
    assert check_file.read_text("utf-8") == r.stdout


def test_an_unreachable_node_fails_the_login_and_skips_the_round_trip(
    node: NodeHarness, tmp_path: Path
) -> None:
    directory = tmp_path / "mz-off"
    assert client(*init_args(node, directory, port=free_loopback_port())).exit_code == 0
    r = client("selftest", "--dir", str(directory), "--timeout", "5")
    assert r.exit_code == 1
    assert "[FAIL] login" in r.stdout and "[SKIP] round trip" in r.stdout
    assert "overall: FAIL" in r.stdout and "Traceback" not in r.output


def test_a_revoked_department_fails_both_sides(node: NodeHarness, tmp_path: Path) -> None:
    directory = tmp_path / "rs"
    assert client(*init_args(node, directory, code=RS)).exit_code == 0
    node.revoke(RS)
    r = server(node, RS)
    assert r.exit_code == 1 and "[FAIL] certificate" in r.stdout and "revoked" in r.stdout
    # the client's CRL: the ministry's new one, installed the way an operator would
    crl = load_config(directory).effective_crl()
    assert crl is not None
    crl.write_bytes((node.home / "trust" / "crl.pem").read_bytes())
    r = client("selftest", "--dir", str(directory), "--timeout", "5")
    assert r.exit_code == 1 and "[FAIL] own certificate" in r.stdout
    assert "E_REVOKED" in r.stdout and "[SKIP] round trip" in r.stdout


def test_an_unknown_department_is_a_clear_error(node: NodeHarness) -> None:
    r = server(node, "XX999999")
    assert r.exit_code == 3 and "E_NOT_FOUND" in r.output and "Traceback" not in r.output
