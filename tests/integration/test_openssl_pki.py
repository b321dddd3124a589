"""Stock OpenSSL agrees with ``exchange-pki``: certificates, CRLs and encrypted keys.

Everything runs as real processes, the way an operator or auditor would: the installed
``exchange-pki`` console script makes the CA, issues, revokes and publishes CRLs, and the
system's ``openssl`` checks the result.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.pki.test_cli import exchange_pki

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed"),
]

PASSPHRASE = "测试 passphrase: 足够长"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["EXCHANGE_PKI_PASSPHRASE"] = PASSPHRASE
    env.pop("EXCHANGE_KEY_PASSPHRASE", None)
    return env


def pki(*args: str | Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [*exchange_pki(), *map(str, args)],
        env=_env(), capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, f"exchange-pki {args}: {proc.stderr}"
    return proc


def openssl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", *map(str, args)],
        env=_env(), capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip


@dataclass
class CliCA:
    dir: Path
    out: Path
    intermediate: bool

    def verify_args(self, cert: Path, crl: Path, *flags: str) -> list[str | Path]:
        args: list[str | Path] = ["verify", "-CAfile", self.dir / "root.pem"]
        if self.intermediate:
            args += ["-untrusted", self.dir / "intermediate.pem"]
        return [*args, *flags, "-CRLfile", crl, cert]


@pytest.fixture(scope="module")
def _templates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both CA flavours, made once by the real CLI; each test works on a copy."""
    base = tmp_path_factory.mktemp("cli-ca")
    pki("init", "--ca-dir", base / "root-only", "--name", "测试部收入认定中心")
    pki("init", "--ca-dir", base / "intermediate", "--name", "测试部收入认定中心", "--intermediate")
    return base


@pytest.fixture(params=["root-only", "intermediate"])
def cli_ca(request: pytest.FixtureRequest, _templates: Path, tmp_path: Path) -> CliCA:
    flavour: str = request.param
    shutil.copytree(_templates / flavour, tmp_path / "ca")
    return CliCA(tmp_path / "ca", tmp_path / "out", flavour == "intermediate")


def _issue(ca: CliCA, dept: str) -> tuple[Path, str]:
    proc = pki(
        "issue", "--ca-dir", ca.dir, "--dept", dept, "--name", "杭州市民政局",
        "--ip", "10.33.1.0/24", "--ip", "127.0.0.1", "--out", ca.out, "--json",
    )  # fmt: skip
    return ca.out / f"{dept}.pem", json.loads(proc.stdout)["serial"]


def test_openssl_verify_fresh_then_revoked(cli_ca: CliCA, tmp_path: Path) -> None:
    cert, serial = _issue(cli_ca, "MZ330100")
    other, _ = _issue(cli_ca, "RS330100")
    crl = tmp_path / "publish" / "crl.pem"
    pki("crl", "--ca-dir", cli_ca.dir, "--out", crl)
    checks = [["-crl_check"]] + ([["-crl_check_all"]] if cli_ca.intermediate else [])

    for flags in checks:
        fresh = openssl(*cli_ca.verify_args(cert, crl, *flags))
        assert fresh.returncode == 0, fresh.stdout + fresh.stderr
        assert fresh.stdout.strip() == f"{cert}: OK"

    pki("revoke", "--ca-dir", cli_ca.dir, "--serial", serial, "--reason", "keyCompromise", "--yes")
    # Until the CRL is re-published OpenSSL cannot know...
    assert openssl(*cli_ca.verify_args(cert, crl, "-crl_check")).returncode == 0
    pki("crl", "--ca-dir", cli_ca.dir, "--out", crl)
    for flags in checks:
        revoked = openssl(*cli_ca.verify_args(cert, crl, *flags))
        assert revoked.returncode != 0
        assert "certificate revoked" in revoked.stdout + revoked.stderr
        # ...and the other department is still fine under the same CRL.
        still = openssl(*cli_ca.verify_args(other, crl, *flags))
        assert still.returncode == 0, still.stdout + still.stderr


def test_openssl_reads_crls_and_sees_increasing_numbers(cli_ca: CliCA, tmp_path: Path) -> None:
    crl = tmp_path / "crl.pem"
    numbers = []
    for _ in range(2):
        pki("crl", "--ca-dir", cli_ca.dir, "--out", crl, "--days", "3")
        # The first CRL in the file is the issuing CA's; its signature checks out with OpenSSL.
        issuer_cert = cli_ca.dir / ("intermediate.pem" if cli_ca.intermediate else "root.pem")
        proc = openssl("crl", "-in", crl, "-noout", "-crlnumber", "-CAfile", issuer_cert)
        assert proc.returncode == 0, proc.stderr
        assert "verify OK" in proc.stderr + proc.stdout
        numbers.append(int(proc.stdout.strip().split("=")[1], 16))
    assert numbers[1] == numbers[0] + 1
    assert crl.read_bytes().count(b"BEGIN X509 CRL") == (2 if cli_ca.intermediate else 1)


def test_openssl_reads_encrypted_ca_keys_and_modes(cli_ca: CliCA) -> None:
    cert, _ = _issue(cli_ca, "MZ330100")
    keys = [cli_ca.dir / "root.key"]
    if cli_ca.intermediate:
        keys.append(cli_ca.dir / "intermediate.key")
    for key in keys:
        assert key.stat().st_mode & 0o777 == 0o600
        assert key.read_text().startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        ok = openssl("pkey", "-in", key, "-passin", "env:EXCHANGE_PKI_PASSPHRASE", "-noout")
        assert ok.returncode == 0, ok.stderr
        env_wrong = _env() | {"WRONG": "not it"}
        bad = subprocess.run(
            ["openssl", "pkey", "-in", str(key), "-passin", "env:WRONG", "-noout"],
            env=env_wrong, capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip
        assert bad.returncode != 0
    # The department key the CA generated is 0600 too, and matches the certificate.
    dept_key = cli_ca.out / "MZ330100.key"
    assert dept_key.stat().st_mode & 0o777 == 0o600
    key_pub = openssl("pkey", "-in", dept_key, "-pubout")
    cert_pub = openssl("x509", "-in", cert, "-noout", "-pubkey")
    assert key_pub.returncode == 0 and cert_pub.returncode == 0
    assert key_pub.stdout == cert_pub.stdout


def test_openssl_sees_the_profile(cli_ca: CliCA) -> None:
    cert, _ = _issue(cli_ca, "MZ330100")
    text = openssl("x509", "-in", cert, "-noout", "-text", "-nameopt", "utf8,sep_comma_plus")
    assert text.returncode == 0, text.stderr
    out = text.stdout
    assert "CN=杭州市民政局" in out
    assert "serialNumber=MZ330100" in out
    assert "OU=department" in out
    assert "email:MZ330100" in out
    assert "IP Address:127.0.0.1" in out
    assert "TLS Web Client Authentication" in out
    assert "E-mail Protection" in out
    assert "SSH Client" in out or "1.3.6.1.5.5.7.3.21" in out
    assert "CA:FALSE" in out
    # OpenSSL's own purpose checks agree with the EKUs.
    crl_free: list[str | Path] = ["verify", "-CAfile", cli_ca.dir / "root.pem"]
    if cli_ca.intermediate:
        crl_free += ["-untrusted", cli_ca.dir / "intermediate.pem"]
    for purpose, ok in [("sslclient", True), ("smimesign", True), ("sslserver", False)]:
        proc = openssl(*crl_free, "-purpose", purpose, cert)
        assert (proc.returncode == 0) is ok, (purpose, proc.stdout, proc.stderr)
