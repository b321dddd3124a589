"""``exchange-pki``: help, JSON output, exit codes, and bad input that must change nothing.

Most tests run the Typer app in-process (fast); the ones that check what an operator's shell
really sees (no traceback, UTF-8 under a C locale) run the installed console script.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner, Result

from exchange_common.codes import reason
from pki.ca import CA_PASSPHRASE_ENV, CertificateAuthority
from pki.cli import app
from pki.identity import DeptCode
from pki.keys import KEY_PASSPHRASE_ENV, load_private_key
from tests.conftest import CAFixture
from tests.pki import certgen
from tests.pki.certgen import DAY

# --- helpers shared with the other PKI tests ----------------------------------------------------


def exchange_pki() -> list[str]:
    """Command line that runs the installed ``exchange-pki`` console script."""
    script = Path(sys.executable).parent / "exchange-pki"
    if script.exists():
        return [str(script)]
    found = shutil.which("exchange-pki")
    if found:
        return [found]
    return [sys.executable, "-c", "from pki.cli import main; main()"]


def run_cli(*args: str | Path, env: Mapping[str, str | None] | None = None) -> Result:
    """Run ``exchange-pki ARGS`` in-process; passphrase variables are unset unless given."""
    full_env: dict[str, str | None] = {CA_PASSPHRASE_ENV: None, KEY_PASSPHRASE_ENV: None}
    full_env.update(env or {})
    return CliRunner().invoke(app, [str(a) for a in args], env=full_env)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file and folder under ``root``: relative path -> bytes (folders map to ``b"/"``).

    Comparing two snapshots shows any file added, removed or rewritten with other bytes. The CA
    keeps SQLite in its default rollback-journal mode, so ``ca.db-journal`` exists only inside
    a transaction and never survives a finished command; a WAL file would show up here, and
    that is intended: a failed command must not leave one behind either.
    """
    out: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        out[rel] = b"/" if path.is_dir() else path.read_bytes()
    return out


def assert_one_line_error(
    result: Result, exit_code: int, code: str, *, json_verdict: bool = False
) -> str:
    """The command failed cleanly: exit code, one ``error:`` line (plus cause), the registry's
    ``hint:`` line, no traceback.

    Nothing on stdout, unless ``json_verdict`` (``--json`` prints a verdict object there)."""
    assert result.exit_code == exit_code, (result.exit_code, result.output, result.exception)
    # An uncaught exception would be a bug with a traceback; typer.Exit is a SystemExit.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.splitlines()
    assert 2 <= len(lines) <= 3, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert lines[0].endswith(f"({code})"), lines[0]
    if len(lines) == 3:
        assert lines[1].startswith("  cause: "), lines[1]
    assert lines[-1] == f"hint: {reason(code).operator_hint}", lines[-1]
    assert "Traceback" not in result.output
    if json_verdict:
        verdict = json.loads(result.stdout)
        assert verdict["valid"] is False and verdict["code"] == code
        assert verdict["text"] == reason(code).peer_text
        assert verdict["hint"] == reason(code).operator_hint
    else:
        assert result.stdout == ""
    return lines[0]


def make_csr(key: object, subject: x509.Name | None = None) -> bytes:
    """A PEM CSR signed by ``key`` with a hostile subject and requested extensions."""
    subject = subject or x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "evil"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, "ROOT"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "node"),
        ]
    )
    builder = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("evil.example")]), False)
    )
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = builder.sign(key, algorithm)  # type: ignore[arg-type]
    return csr.public_bytes(serialization.Encoding.PEM)


def flip_signature_byte(csr_pem: bytes) -> bytes:
    """The CSR with one bit of its signature flipped (the last DER byte is signature)."""
    der = bytearray(x509.load_pem_x509_csr(csr_pem).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01
    return bytes(der)


def serial_of(pem_path: Path) -> str:
    return format(x509.load_pem_x509_certificate(pem_path.read_bytes()).serial_number, "X")


# --- help -------------------------------------------------------------------------------------

COMMANDS = ["init", "issue", "revoke", "crl", "list", "verify"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_examples(command: str) -> None:
    result = run_cli(command, "--help")
    assert result.exit_code == 0
    assert "Examples" in result.stdout
    assert "exchange-pki " + command in result.stdout


def test_top_level_help_lists_commands_and_exit_codes() -> None:
    result = run_cli("--help")
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.stdout
    assert "Exit codes" in result.stdout


# --- output files and JSON --------------------------------------------------------------------


def test_init_json_and_files(tmp_path: Path) -> None:
    result = run_cli(
        "init", "--ca-dir", tmp_path / "ca", "--name", "测试部收入认定中心", "--intermediate",
        "--json",
        env={CA_PASSPHRASE_ENV: "correct horse"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["name"] == "测试部收入认定中心"
    assert data["encrypted"] is True
    assert set(data["files"]) == {"root", "crl", "intermediate"}
    for path in data["files"].values():
        assert Path(path).is_file()


def test_init_without_passphrase_source_is_refused(tmp_path: Path) -> None:
    result = run_cli("init", "--ca-dir", tmp_path / "ca", "--name", "X")
    assert_one_line_error(result, 3, "E_PASSPHRASE")
    assert not (tmp_path / "ca").exists()


def test_issue_writes_chain_and_private_key(inter_ca: CAFixture, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli(
        "issue", "--ca-dir", inter_ca.dir, "--dept", "MZ330100", "--name", "杭州市民政局",
        "--ip", "10.33.1.0/24", "--ip", "10.33.9.7", "--out", out, "--json",
        env={KEY_PASSPHRASE_ENV: "dept secret"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["dept"] == "MZ330100"
    assert data["name"] == "杭州市民政局"
    assert data["networks"] == ["10.33.1.0/24", "10.33.9.7/32"]
    assert data["certificate"] == str(out / "MZ330100.pem")
    assert data["key"] == str(out / "MZ330100.key")
    chain = x509.load_pem_x509_certificates((out / "MZ330100.pem").read_bytes())
    assert [c.subject for c in chain[1:]] == [inter_ca.ca.intermediate.subject]  # type: ignore[union-attr]
    assert format(chain[0].serial_number, "X") == data["serial"]
    key_file = out / "MZ330100.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert b"ENCRYPTED" in key_file.read_bytes().splitlines()[0]
    key = load_private_key(key_file, b"dept secret")
    assert key.public_key() == chain[0].public_key()


def test_issue_refuses_to_overwrite_output(test_ca: CAFixture, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "MZ1.key").write_bytes(b"precious")
    before = snapshot(test_ca.dir)
    result = run_cli("issue", "--ca-dir", test_ca.dir, "--dept", "MZ1", "--name", "x", "--out", out)
    assert_one_line_error(result, 3, "E_EXISTS")
    assert (out / "MZ1.key").read_bytes() == b"precious"
    assert snapshot(test_ca.dir) == before


def _issue(ca: CAFixture, out: Path, dept: str = "MZ330100", name: str = "杭州市民政局") -> Path:
    result = run_cli(
        "issue", "--ca-dir", ca.dir, "--dept", dept, "--name", name, "--ip", "10.33.1.0/24",
        "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return out / f"{dept}.pem"


LIST_FIELDS = {
    "serial", "dept", "name", "role", "issuer", "state", "not_before", "not_after", "issued_at",
    "renewal_of", "revoked_at", "revocation_reason", "fingerprint_sha256",
}  # fmt: skip


def test_list_json_fields_and_chinese_names(test_ca: CAFixture, tmp_path: Path) -> None:
    names = {"MZ330100": "杭州市民政局", "RS330100": "杭州市人力资源和社会保障局", "GA1": "公安局"}
    for dept, name in names.items():
        _issue(test_ca, tmp_path, dept, name)
    revoked = serial_of(tmp_path / "GA1.pem")
    assert run_cli("revoke", "--ca-dir", test_ca.dir, "--serial", revoked, "--yes").exit_code == 0

    result = run_cli("list", "--ca-dir", test_ca.dir, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["dept"] for r in rows] == list(names)
    for row in rows:
        assert set(row) == LIST_FIELDS
        assert row["name"] == names[row["dept"]]
        assert row["issuer"] == "root"
        assert row["role"] == "department"
    by_dept = {r["dept"]: r for r in rows}
    assert by_dept["GA1"]["state"] == "revoked"
    assert by_dept["GA1"]["revocation_reason"] == "unspecified"
    assert by_dept["MZ330100"]["state"] == "valid"
    assert by_dept["MZ330100"]["revoked_at"] is None

    one = json.loads(
        run_cli("list", "--ca-dir", test_ca.dir, "--dept", "RS330100", "--json").stdout
    )
    assert [r["name"] for r in one] == ["杭州市人力资源和社会保障局"]
    # The table view shows the Chinese name and whole serials, even piped (80 columns).
    table = run_cli("list", "--ca-dir", test_ca.dir).stdout
    assert "杭州市民政局" in table
    assert revoked in table
    assert "…" not in table


def test_chinese_name_survives_real_process_under_c_locale(
    test_ca: CAFixture, tmp_path: Path
) -> None:
    """An operator's shell with LANG=C must not mangle or crash on the department name."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG", "PYTHONIO"))}
    env |= {"LC_ALL": "C", "LANG": "C"}
    env.pop(CA_PASSPHRASE_ENV, None)
    issue = subprocess.run(
        [*exchange_pki(), "issue", "--ca-dir", str(test_ca.dir), "--dept", "MZ330100",
         "--name", "杭州市民政局", "--out", str(tmp_path)],
        env=env, capture_output=True, check=False, timeout=60,
    )  # fmt: skip
    assert issue.returncode == 0, issue.stderr.decode(errors="replace")
    listing = subprocess.run(
        [*exchange_pki(), "list", "--ca-dir", str(test_ca.dir), "--json"],
        env=env, capture_output=True, check=False, timeout=60,
    )  # fmt: skip
    assert listing.returncode == 0, listing.stderr.decode(errors="replace")
    rows = json.loads(listing.stdout.decode("utf-8"))
    assert [r["name"] for r in rows] == ["杭州市民政局"]


VERIFY_FIELDS = {
    "valid", "dept", "name", "role", "serial", "not_after", "networks", "fingerprint_sha256",
}  # fmt: skip


def test_verify_json_valid(inter_ca: CAFixture, tmp_path: Path) -> None:
    pem = _issue(inter_ca, tmp_path)
    result = run_cli("verify", "--ca-dir", inter_ca.dir, pem, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == VERIFY_FIELDS
    leaf = x509.load_pem_x509_certificates(pem.read_bytes())[0]
    assert data["valid"] is True
    assert data["dept"] == "MZ330100"
    assert data["name"] == "杭州市民政局"
    assert data["role"] == "department"
    assert data["serial"] == format(leaf.serial_number, "X")
    assert data["networks"] == ["10.33.1.0/24"]
    assert data["fingerprint_sha256"] == leaf.fingerprint(hashes.SHA256()).hex()
    assert data["not_after"] == leaf.not_valid_after_utc.isoformat()


def test_verify_text_ok(test_ca: CAFixture, tmp_path: Path) -> None:
    result = run_cli("verify", "--ca-dir", test_ca.dir, _issue(test_ca, tmp_path))
    assert result.exit_code == 0
    assert result.stdout.startswith("OK: MZ330100 杭州市民政局 (department)")


def test_verify_revoked_in_crl(inter_ca: CAFixture, tmp_path: Path) -> None:
    pem = _issue(inter_ca, tmp_path / "out")
    serial = serial_of(pem)
    assert run_cli("revoke", "--ca-dir", inter_ca.dir, "--serial", serial, "--yes").exit_code == 0
    assert run_cli("crl", "--ca-dir", inter_ca.dir, "--out", tmp_path / "crl.pem").exit_code == 0
    result = run_cli("verify", "--ca-dir", inter_ca.dir, pem, "--json")
    line = assert_one_line_error(result, 1, "E_REVOKED", json_verdict=True)
    assert "recorded in the CA database" not in line  # this one came from the CRL
    assert serial in result.stderr  # the operator is told which serial (cause line)
    verdict = json.loads(result.stdout)  # --json: scripts get the verdict on stdout as well
    assert verdict["valid"] is False and verdict["code"] == "E_REVOKED"


def test_verify_revoked_in_database_before_new_crl(inter_ca: CAFixture, tmp_path: Path) -> None:
    pem = _issue(inter_ca, tmp_path)
    assert run_cli("verify", "--ca-dir", inter_ca.dir, pem).exit_code == 0
    assert run_cli("revoke", "--ca-dir", inter_ca.dir, "--dept", "MZ330100", "-y").exit_code == 0
    # No `crl` run: crl.pem does not list it yet, the database does.
    line = assert_one_line_error(run_cli("verify", "--ca-dir", inter_ca.dir, pem), 1, "E_REVOKED")
    assert "recorded in the CA database" in line


def test_verify_certificate_of_another_ca(test_ca: CAFixture, tmp_path: Path) -> None:
    other = CertificateAuthority.init(tmp_path / "other", "Other CA", passphrase=None)
    issued = other.issue(DeptCode("MZ330100"), "x", [])
    other.close()
    pem = tmp_path / "foreign.pem"
    pem.write_bytes(issued.certificate.public_bytes(serialization.Encoding.PEM))
    assert_one_line_error(run_cli("verify", "--ca-dir", test_ca.dir, pem), 1, "E_CHAIN")


def test_verify_rogue_certificate_not_in_database(test_ca: CAFixture, tmp_path: Path) -> None:
    """Signed with the CA key but never recorded: someone used the key behind the CA's back."""
    key = load_private_key(test_ca.dir / "root.key")
    issuer = certgen.CA(test_ca.ca.root, key)
    rogue = certgen.leaf(issuer, dt.datetime.now(dt.UTC))
    pem = tmp_path / "rogue.pem"
    pem.write_bytes(rogue.public_bytes(serialization.Encoding.PEM))
    line = assert_one_line_error(run_cli("verify", "--ca-dir", test_ca.dir, pem), 4, "E_CA_DB")
    assert "not in its database" in line


def test_verify_at_future_times(test_ca: CAFixture, tmp_path: Path) -> None:
    pem = _issue(test_ca, tmp_path)
    leaf = x509.load_pem_x509_certificate(pem.read_bytes())
    # The CRL written by `issue`'s CA is the one from init: 7 days.
    in_two_weeks = (leaf.not_valid_before_utc + DAY * 14).isoformat()
    assert_one_line_error(
        run_cli("verify", "--ca-dir", test_ca.dir, pem, "--at", in_two_weeks), 1, "E_CRL_STALE"
    )
    after_expiry = (leaf.not_valid_after_utc + DAY).isoformat()
    assert_one_line_error(
        run_cli("verify", "--ca-dir", test_ca.dir, pem, "--at", after_expiry), 1, "E_EXPIRED"
    )
    assert_one_line_error(
        run_cli("verify", "--ca-dir", test_ca.dir, pem, "--at", "next tuesday"), 3, "E_INPUT"
    )


def test_verify_with_explicit_crl_file(test_ca: CAFixture, tmp_path: Path) -> None:
    pem = _issue(test_ca, tmp_path)
    old_crl = tmp_path / "old-crl.pem"
    shutil.copy(test_ca.dir / "crl.pem", old_crl)
    assert (
        run_cli("revoke", "--ca-dir", test_ca.dir, "--serial", serial_of(pem), "-y").exit_code == 0
    )
    assert run_cli("crl", "--ca-dir", test_ca.dir, "--out", tmp_path / "new.pem").exit_code == 0
    # With the old CRL the database still catches it; with the new one the CRL does.
    old = assert_one_line_error(
        run_cli("verify", "--ca-dir", test_ca.dir, "--crl", old_crl, pem), 1, "E_REVOKED"
    )
    assert "recorded in the CA database" in old
    new = assert_one_line_error(
        run_cli("verify", "--ca-dir", test_ca.dir, "--crl", tmp_path / "new.pem", pem),
        1,
        "E_REVOKED",
    )
    assert "recorded in the CA database" not in new


def test_revoke_and_crl_json(test_ca: CAFixture, tmp_path: Path) -> None:
    _issue(test_ca, tmp_path)
    result = run_cli(
        "revoke", "--ca-dir", test_ca.dir, "--dept", "MZ330100", "--reason", "key-compromise",
        "--json", "--yes",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    assert set(row) == LIST_FIELDS
    assert row["state"] == "revoked"
    assert row["revocation_reason"] == "keyCompromise"
    out = tmp_path / "publish" / "crl.pem"
    result = run_cli("crl", "--ca-dir", test_ca.dir, "--out", out, "--days", "3", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["revoked"] == 1
    assert data["out"] == str(out)
    assert out.read_bytes() == (test_ca.dir / "crl.pem").read_bytes()
    crl = x509.load_pem_x509_crl(out.read_bytes())
    entry = crl.get_revoked_certificate_by_serial_number(int(row["serial"], 16))
    assert entry is not None


# --- bad input: clear error, right exit code, CA directory unchanged ---------------------------


@dataclass
class Ctx:
    ca: Path
    tmp: Path
    values: dict[str, str] = field(default_factory=dict)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _setup_issued(ctx: Ctx) -> None:
    result = run_cli(
        "issue", "--ca-dir", ctx.ca, "--dept", "MZ330100", "--name", "杭州市民政局",
        "--out", ctx.tmp / "first",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    ctx.values["serial"] = serial_of(ctx.tmp / "first" / "MZ330100.pem")


def _setup_revoked(ctx: Ctx) -> None:
    _setup_issued(ctx)
    assert (
        run_cli("revoke", "--ca-dir", ctx.ca, "--serial", ctx.values["serial"], "--yes").exit_code
        == 0
    )


def _issue_args(ctx: Ctx, *extra: str | Path, dept: str = "RS330100") -> list[str | Path]:
    return [
        "issue", "--ca-dir", ctx.ca, "--dept", dept, "--name", "杭州市人社局",
        "--out", ctx.tmp / "out", *extra,
    ]  # fmt: skip


def _csr_args(ctx: Ctx, data: bytes) -> list[str | Path]:
    return _issue_args(ctx, "--csr", _write(ctx.tmp / "req.csr", data))


def _weak_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - on purpose


@dataclass(frozen=True)
class BadInput:
    name: str
    args: Callable[[Ctx], list[str | Path]]
    exit_code: int
    code: str
    message: str = ""
    setup: Callable[[Ctx], None] | None = None


BAD_INPUTS = [
    BadInput("malformed-csr", lambda c: _csr_args(c, b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"), 3, "E_CSR", "malformed"),
    BadInput("garbage-csr", lambda c: _csr_args(c, os.urandom(300)), 3, "E_CSR", "malformed"),
    BadInput("csr-bad-self-signature", lambda c: _csr_args(c, flip_signature_byte(make_csr(certgen.new_key()))), 3, "E_CSR", "self-signature"),
    BadInput("csr-ed25519-key", lambda c: _csr_args(c, make_csr(ed25519.Ed25519PrivateKey.generate())), 3, "E_CSR", "EC (P-256/P-384) or RSA"),
    BadInput("csr-rsa-1024", lambda c: _csr_args(c, make_csr(_weak_rsa_key())), 3, "E_CSR", "too small"),
    BadInput("csr-curve-p521", lambda c: _csr_args(c, make_csr(ec.generate_private_key(ec.SECP521R1()))), 3, "E_CSR", "unsupported curve"),
    BadInput("csr-missing-file", lambda c: _issue_args(c, "--csr", c.tmp / "nope.csr"), 3, "E_NOT_FOUND"),
    BadInput("csr-with-key-type", lambda c: [*_csr_args(c, make_csr(certgen.new_key())), "--key-type", "rsa"], 3, "E_INPUT"),
    BadInput("duplicate-department", lambda c: _issue_args(c, dept="MZ330100"), 4, "E_DUPLICATE", "--renew", _setup_issued),
    BadInput("renew-without-live", lambda c: _issue_args(c, "--renew"), 4, "E_NOT_FOUND", "no live certificate"),
    BadInput("invalid-ip", lambda c: _issue_args(c, "--ip", "10.0.0.300"), 3, "E_IP", "'10.0.0.300'"),
    BadInput("cidr-host-bits", lambda c: _issue_args(c, "--ip", "10.0.0.1/24"), 3, "E_IP", "did you mean 10.0.0.0/24?"),
    BadInput("dept-path-traversal", lambda c: _issue_args(c, dept="../x"), 3, "E_DEPT_CODE", "'../x'"),
    BadInput("dept-with-slash", lambda c: _issue_args(c, dept="a/b"), 3, "E_DEPT_CODE"),
    BadInput("name-too-long", lambda c: [*_issue_args(c)[:-4], "--name", "内蒙古自治区呼和浩特市赛罕区人力资源和社会保障局", "--out", c.tmp / "out"], 3, "E_INPUT", "too long"),
    BadInput("days-zero", lambda c: _issue_args(c, "--days", "0"), 3, "E_INPUT", "1-3650"),
    BadInput("out-is-a-file", lambda c: [*_issue_args(c)[:-1], _write(c.tmp / "file", b"x")], 3, "E_IO"),
    BadInput("revoke-unknown-serial", lambda c: ["revoke", "--ca-dir", c.ca, "--serial", "DEADBEEF"], 4, "E_UNKNOWN_SERIAL", "DEADBEEF"),
    BadInput("revoke-already-revoked", lambda c: ["revoke", "--ca-dir", c.ca, "--serial", c.values["serial"]], 4, "E_ALREADY_REVOKED", "already revoked", _setup_revoked),
    BadInput("revoke-dept-without-live", lambda c: ["revoke", "--ca-dir", c.ca, "--dept", "MZ330100"], 4, "E_NOT_FOUND", "", _setup_revoked),
    BadInput("revoke-bad-serial", lambda c: ["revoke", "--ca-dir", c.ca, "--serial", "not-hex"], 3, "E_SERIAL"),
    BadInput("revoke-bad-reason", lambda c: ["revoke", "--ca-dir", c.ca, "--serial", c.values["serial"], "--reason", "certificateHold"], 3, "E_REASON", "", _setup_issued),
    BadInput("revoke-both-serial-and-dept", lambda c: ["revoke", "--ca-dir", c.ca, "--serial", c.values["serial"], "--dept", "MZ330100"], 3, "E_INPUT", "", _setup_issued),
    BadInput("revoke-dept-path-traversal", lambda c: ["revoke", "--ca-dir", c.ca, "--dept", "../.."], 3, "E_DEPT_CODE"),
    BadInput("crl-days-too-long", lambda c: ["crl", "--ca-dir", c.ca, "--out", c.tmp / "crl.pem", "--days", "400"], 3, "E_INPUT"),
    BadInput("verify-not-a-certificate", lambda c: ["verify", "--ca-dir", c.ca, _write(c.tmp / "x.pem", b"hello")], 3, "E_CERT_FORMAT"),
    BadInput("init-into-existing-ca", lambda c: ["init", "--ca-dir", c.ca, "--name", "again", "--no-passphrase"], 3, "E_EXISTS", "not empty"),
]  # fmt: skip


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c.name for c in BAD_INPUTS])
def test_bad_input_changes_nothing(test_ca: CAFixture, tmp_path: Path, case: BadInput) -> None:
    ctx = Ctx(test_ca.dir, tmp_path)
    if case.setup is not None:
        case.setup(ctx)
    args = case.args(ctx)
    before = snapshot(test_ca.dir)
    line = assert_one_line_error(run_cli(*args), case.exit_code, case.code)
    assert case.message in line
    assert snapshot(test_ca.dir) == before
    assert not (tmp_path / "out" / "RS330100.pem").exists()
    assert not (tmp_path / "out" / "RS330100.key").exists()


def test_init_into_non_empty_dir_changes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "ca"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    before = snapshot(tmp_path)
    result = run_cli("init", "--ca-dir", target, "--name", "X", "--no-passphrase")
    assert_one_line_error(result, 3, "E_EXISTS")
    assert snapshot(tmp_path) == before  # no half-made temporary CA next to it either


def test_init_under_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    result = run_cli("init", "--ca-dir", tmp_path / "file" / "ca", "--name", "X", "--no-passphrase")
    assert_one_line_error(result, 3, "E_IO")


def test_not_a_ca_directory(tmp_path: Path) -> None:
    result = run_cli("list", "--ca-dir", tmp_path)
    line = assert_one_line_error(result, 4, "E_NO_CA")
    assert "exchange-pki init" in line
    assert list(tmp_path.iterdir()) == []  # and no ca.db was created there


@pytest.fixture(scope="module")
def encrypted_ca_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("enc") / "ca"
    result = run_cli(
        "init", "--ca-dir", path, "--name", "加密CA", "--intermediate",
        env={CA_PASSPHRASE_ENV: "right passphrase"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return path


@pytest.mark.parametrize("passphrase", ["wrong passphrase", None], ids=["wrong", "missing"])
@pytest.mark.parametrize("command", ["issue", "crl"])
def test_passphrase_errors_change_nothing(
    encrypted_ca_template: Path, tmp_path: Path, passphrase: str | None, command: str
) -> None:
    ca = tmp_path / "ca"
    shutil.copytree(encrypted_ca_template, ca)
    if command == "issue":
        args: list[str | Path] = [
            "issue", "--ca-dir", ca, "--dept", "MZ1", "--name", "x", "--out", tmp_path / "o",
        ]  # fmt: skip
    else:
        args = ["crl", "--ca-dir", ca, "--out", tmp_path / "crl.pem"]
    before = snapshot(ca)
    result = run_cli(*args, env={CA_PASSPHRASE_ENV: passphrase})
    line = assert_one_line_error(result, 4, "E_PASSPHRASE")
    assert CA_PASSPHRASE_ENV in line or "wrong passphrase" in line
    assert snapshot(ca) == before
    assert not (tmp_path / "o" / "MZ1.key").exists()
    assert not (tmp_path / "crl.pem").exists()
    # And the right passphrase works on the very same directory.
    assert run_cli(*args, env={CA_PASSPHRASE_ENV: "right passphrase"}).exit_code == 0


@pytest.mark.parametrize(
    "args",
    [["issue", "--ca-dir", "x", "--name", "n", "--out", "o"], ["list"], ["frobnicate"],
     ["issue", "--key-type", "dsa"], ["list", "--ca-dir", "x", "--expiring", "soon"]],
    ids=["missing-option", "missing-ca-dir", "unknown-command", "bad-choice", "bad-int"],
)  # fmt: skip
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = run_cli(*args)
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_real_process_error_is_one_line(test_ca: CAFixture) -> None:
    """What the operator's shell shows: one line on stderr, exit 3, nothing on stdout."""
    env = dict(os.environ)
    env.pop(CA_PASSPHRASE_ENV, None)
    before = snapshot(test_ca.dir)
    proc = subprocess.run(
        [*exchange_pki(), "issue", "--ca-dir", str(test_ca.dir), "--dept", "MZ1", "--name", "x",
         "--ip", "10.0.0.1/24", "--out", str(test_ca.dir.parent / "out")],
        env=env, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 3
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "error: invalid IP address or CIDR '10.0.0.1/24': 10.0.0.1/24 has host bits set "
        "(did you mean 10.0.0.0/24?) (E_IP)",
        f"hint: {reason('E_IP').operator_hint}",
    ]
    assert snapshot(test_ca.dir) == before
