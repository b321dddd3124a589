"""``exchange-pki bundle seal|verify|open|extract-signature``: the operator's forms and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from pki.ca import IssuedCertificate
from pki.cli import app
from pki.keys import KEY_PASSPHRASE_ENV, certificate_pem, private_key_pem
from tests.conftest import CAFixture
from tests.pki import bundlegen


def run(*args: str | Path, env: dict[str, str | None] | None = None) -> Result:
    full: dict[str, str | None] = {KEY_PASSPHRASE_ENV: None}
    full.update(env or {})
    return CliRunner().invoke(app, ["bundle", *(str(a) for a in args)], env=full)


def assert_error(result: Result, exit_code: int, code: str) -> None:
    assert result.exit_code == exit_code, (result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert errors[0].endswith(f"({code})"), errors[0]
    assert "Traceback" not in result.stderr


class Files:
    """Certificates and keys of the parties written as an operator would have them."""

    def __init__(self, ca: CAFixture, root: Path, passphrase: bytes | None = None):
        self.ca = ca
        self.root = root
        root.mkdir()
        ca.trust()  # fresh crl.pem beside root.pem in the CA directory
        self.trust = ca.dir / "root.pem"
        self.crl = ca.dir / "crl.pem"
        self.passphrase = passphrase

    def party(self, code: str, name: str) -> tuple[Path, Path]:
        issued: IssuedCertificate = self.ca.issue(code, name)
        assert issued.key is not None
        cert = self.root / f"{code}.pem"
        key = self.root / f"{code}.key"
        cert.write_bytes(certificate_pem(issued.chain))
        key.write_bytes(private_key_pem(issued.key, self.passphrase))
        return cert, key


@pytest.fixture
def files(inter_ca: CAFixture, tmp_path: Path) -> Files:
    return Files(inter_ca, tmp_path / "pki")


def _seal(files: Files, tmp_path: Path, *extra: str | Path) -> tuple[Path, Path, Path, Path]:
    s_cert, s_key = files.party("MZ330100", "杭州市民政局")
    r_cert, r_key = files.party("NODE01", "杭州核对节点")
    data = tmp_path / "低保名单.csv"
    data.write_text("姓名,身份证号\n张三,11010519491231002X\n", encoding="utf-8")
    bundle = tmp_path / "push.bundle"
    result = run(
        "seal", "--cert", s_cert, "--key", s_key, "--to", r_cert, "--out", bundle, data, *extra
    )
    assert result.exit_code == 0, result.output
    return bundle, r_cert, r_key, data


def test_seal_verify_open_round_trip(files: Files, tmp_path: Path) -> None:
    bundle, r_cert, r_key, data = _seal(files, tmp_path, "--kind", "data")
    verified = run("verify", "--trust", files.trust, "--crl", files.crl, bundle)
    assert verified.exit_code == 0, verified.output
    assert "OK: bundle" in verified.stdout and "MZ330100" in verified.stdout
    out = tmp_path / "inbox"
    opened = run(
        "open",
        "--cert",
        r_cert,
        "--key",
        r_key,
        "--trust",
        files.trust,
        "--crl",
        files.crl,
        "--out",
        out,
        bundle,
    )
    assert opened.exit_code == 0, opened.output
    assert (out / data.name).read_bytes() == data.read_bytes()


def test_json_outputs(files: Files, tmp_path: Path) -> None:
    bundle, r_cert, r_key, data = _seal(files, tmp_path, "--json", "--kind", "query")
    verified = json.loads(run("verify", "--trust", files.trust, "--json", bundle).stdout)
    assert verified["valid"] is True
    assert verified["kind"] == "query"
    assert verified["sender"]["dept"] == "MZ330100"
    out = tmp_path / "q"
    opened = run(
        "open",
        "--cert",
        r_cert,
        "--key",
        r_key,
        "--trust",
        files.trust,
        "--out",
        out,
        "--json",
        bundle,
    )
    doc = json.loads(opened.stdout)
    assert doc["members"][0]["name"] == "低保名单.csv"
    assert doc["members"][0]["media_type"] == "text/csv"
    assert Path(doc["members"][0]["path"]).read_bytes() == data.read_bytes()


def test_seal_with_fields_and_trust_check(files: Files, tmp_path: Path) -> None:
    fields = tmp_path / "application.json"
    fields.write_text(
        json.dumps({"业务类型": "低保", "人数": 1}, ensure_ascii=False), encoding="utf-8"
    )
    bundle, r_cert, r_key, _ = _seal(
        files, tmp_path, "--fields", fields, "--trust", files.trust, "--kind", "query"
    )
    out = tmp_path / "q"
    doc = json.loads(
        run(
            "open",
            "--cert",
            r_cert,
            "--key",
            r_key,
            "--trust",
            files.trust,
            "--out",
            out,
            "--json",
            bundle,
        ).stdout
    )
    assert doc["fields"] == {"业务类型": "低保", "人数": 1}


def test_verify_tampered_bundle_exits_1(files: Files, tmp_path: Path) -> None:
    bundle, *_ = _seal(files, tmp_path)
    data = bytearray(bundle.read_bytes())
    data[bundlegen.layout(bytes(data)).ct_start + 10] ^= 1
    bundle.write_bytes(bytes(data))
    assert_error(run("verify", "--trust", files.trust, bundle), 1, "E_SIGNATURE")


def test_verify_without_any_crl_fails_closed(files: Files, tmp_path: Path) -> None:
    bundle, *_ = _seal(files, tmp_path)
    lonely = tmp_path / "elsewhere"
    lonely.mkdir()
    trust = lonely / "root.pem"
    trust.write_bytes(files.trust.read_bytes())
    result = run("verify", "--trust", trust, bundle)
    assert_error(result, 1, "E_CRL_MISSING")
    assert "warning: no --crl" in result.stderr


def test_open_by_non_recipient_writes_nothing(files: Files, tmp_path: Path) -> None:
    bundle, *_ = _seal(files, tmp_path)
    o_cert, o_key = files.party("GA330100", "杭州市公安局")
    out = tmp_path / "out"
    result = run(
        "open", "--cert", o_cert, "--key", o_key, "--trust", files.trust, "--out", out, bundle
    )
    assert_error(result, 1, "E_RECIPIENT")
    assert not out.exists()


def test_open_tampered_bundle_writes_nothing(files: Files, tmp_path: Path) -> None:
    bundle, r_cert, r_key, _ = _seal(files, tmp_path)
    data = bundle.read_bytes()
    bundle.write_bytes(data[:-1])
    out = tmp_path / "out"
    result = run(
        "open", "--cert", r_cert, "--key", r_key, "--trust", files.trust, "--out", out, bundle
    )
    assert_error(result, 1, "E_TRUNCATED")
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ica",
        "pki",
        "push.bundle",
        "低保名单.csv",
    ]


def test_open_existing_member_exits_3_and_keeps_the_file(files: Files, tmp_path: Path) -> None:
    bundle, r_cert, r_key, data = _seal(files, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / data.name).write_text("mine")
    result = run(
        "open", "--cert", r_cert, "--key", r_key, "--trust", files.trust, "--out", out, bundle
    )
    assert_error(result, 3, "E_EXISTS")
    assert (out / data.name).read_text() == "mine"


def test_encrypted_keys_read_the_passphrase_variable(inter_ca: CAFixture, tmp_path: Path) -> None:
    files = Files(inter_ca, tmp_path / "pki", passphrase=b"correct horse")
    s_cert, s_key = files.party("MZ330100", "杭州市民政局")
    r_cert, _ = files.party("NODE01", "节点")
    data = tmp_path / "a.txt"
    data.write_text("x")
    bundle = tmp_path / "b.bundle"
    args = ("seal", "--cert", s_cert, "--key", s_key, "--to", r_cert, "--out", bundle, data)
    assert_error(run(*args), 4, "E_PASSPHRASE")
    assert not bundle.exists()
    ok = run(*args, env={KEY_PASSPHRASE_ENV: "correct horse"})
    assert ok.exit_code == 0, ok.output


def test_bad_input_exits_3(files: Files, tmp_path: Path) -> None:
    s_cert, s_key = files.party("MZ330100", "杭州市民政局")
    bundle = tmp_path / "b.bundle"
    missing = tmp_path / "missing.csv"
    assert_error(
        run("seal", "--cert", s_cert, "--key", s_key, "--to", s_cert, "--out", bundle, missing),
        3,
        "E_NOT_FOUND",
    )
    assert not bundle.exists()
    assert_error(run("verify", "--trust", files.trust, tmp_path / "nope.bundle"), 3, "E_NOT_FOUND")
    dup = tmp_path / "sub"
    dup.mkdir()
    (dup / "a.csv").write_text("1")
    (tmp_path / "a.csv").write_text("2")
    result = run(
        "seal",
        "--cert",
        s_cert,
        "--key",
        s_key,
        "--to",
        s_cert,
        "--out",
        bundle,
        tmp_path / "a.csv",
        dup / "a.csv",
    )
    assert_error(result, 3, "E_NAME")
    assert_error(run("verify", "--trust", files.trust, "--at", "yesterday", bundle), 3, "E_INPUT")


def test_verify_at_a_later_time(files: Files, tmp_path: Path) -> None:
    bundle, *_ = _seal(files, tmp_path, "--ttl-days", "1")
    result = run("verify", "--trust", files.trust, "--at", "2099-01-01T00:00:00+08:00", bundle)
    assert result.exit_code == 1


def test_extract_signature_writes_the_pieces(files: Files, tmp_path: Path) -> None:
    bundle, *_ = _seal(files, tmp_path)
    out = tmp_path / "sig"
    result = run("extract-signature", bundle, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    lay = bundlegen.layout(bundle.read_bytes())
    assert int(doc["SIGNED_LENGTH"]) == lay.signed_length
    assert (out / "sig.der").read_bytes() == bundle.read_bytes()[lay.sig_start : lay.chain_start]
    for name in ("signer.pem", "signer.der", "pub.pem", "chain.pem", "pieces.env"):
        assert (out / name).is_file(), name
    assert any("openssl dgst -sha256" in c for c in doc["commands"])


def test_help_has_examples() -> None:
    for command in ("seal", "verify", "open", "extract-signature"):
        result = run(command, "--help")
        assert result.exit_code == 0
        assert "Example" in result.stdout, command
