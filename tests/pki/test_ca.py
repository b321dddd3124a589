"""pki.ca: init, issue (generated key, CSR), the certificate profile, renewal, revoke, CRLs."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from exchange_common.errors import CAError, InputError
from pki.ca import CertificateAuthority
from pki.ca_input import parse_csr, parse_reason, parse_serial
from pki.identity import (
    OID_REGISTERED_NETWORKS,
    OID_SECURE_SHELL_CLIENT,
    OID_SECURE_SHELL_SERVER,
    DeptCode,
    Role,
    decode_networks,
)
from pki.keys import load_private_key
from pki.profiles import BACKDATE, end_entity_name
from pki.verify import TrustStore, load_crls, verify_certificate
from tests.conftest import NOW, CAFixture, make_ca
from tests.pki import certgen
from tests.pki.certgen import DAY
from tests.pki.test_cli import exchange_pki, make_csr, run_cli, snapshot

# --- init -------------------------------------------------------------------------------------


def test_init_layout_encrypted(tmp_path: Path) -> None:
    ca = CertificateAuthority.init(tmp_path / "ca", " 测试中心 ", passphrase=b"pw", now=NOW)
    ca.close()
    d = tmp_path / "ca"
    names = {p.name for p in d.iterdir()}
    assert names == {"root.pem", "root.key", "ca.json", "ca.db", "certs", "crl.pem", ".lock"}
    assert (d / "root.key").stat().st_mode & 0o777 == 0o600
    assert d.stat().st_mode & 0o777 == 0o700
    assert json.loads((d / "ca.json").read_text("utf-8"))["name"] == "测试中心"
    root = x509.load_pem_x509_certificate((d / "root.pem").read_bytes())
    assert root.subject == root.issuer
    assert root.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "测试中心"
    bc = root.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    assert root.not_valid_before_utc == NOW - BACKDATE
    # The key is encrypted at rest and only the passphrase opens it.
    assert (d / "root.key").read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    with pytest.raises(CAError) as info:
        load_private_key(d / "root.key", passphrase_env="UNSET_TEST_VARIABLE")
    assert info.value.code == "E_PASSPHRASE"
    with pytest.raises(CAError) as info:
        load_private_key(d / "root.key", b"wrong")
    assert info.value.code == "E_PASSPHRASE"
    assert load_private_key(d / "root.key", b"pw").public_key() == root.public_key()
    # One CRL, empty, from the root; no leftover temporary folder next to the CA.
    [crl] = load_crls(d / "crl.pem")
    assert crl.issuer == root.subject
    assert len(crl) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["ca"]


def test_init_with_intermediate(inter_ca: CAFixture) -> None:
    root, inter = inter_ca.ca.root, inter_ca.ca.intermediate
    assert inter is not None
    assert inter.issuer == root.subject
    inter.verify_directly_issued_by(root)
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 1
    assert inter.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    assert (inter_ca.dir / "intermediate.key").stat().st_mode & 0o777 == 0o600
    crls = load_crls(inter_ca.dir / "crl.pem")
    assert [c.issuer for c in crls] == [inter.subject, root.subject]
    assert crls[0].is_signature_valid(inter.public_key())  # type: ignore[arg-type]
    assert crls[1].is_signature_valid(root.public_key())  # type: ignore[arg-type]


def test_init_refuses_non_empty_directory(test_ca: CAFixture) -> None:
    before = snapshot(test_ca.dir)
    with pytest.raises(InputError) as info:
        CertificateAuthority.init(test_ca.dir, "again", passphrase=None)
    assert info.value.code == "E_EXISTS"
    assert snapshot(test_ca.dir) == before


def test_init_into_existing_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "ca").mkdir()
    CertificateAuthority.init(tmp_path / "ca", "X", passphrase=None).close()
    assert (tmp_path / "ca" / "root.pem").is_file()


def test_failed_init_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("pki.ca.CADatabase.append_event", boom)
    with pytest.raises(OSError, match="disk full"):
        CertificateAuthority.init(tmp_path / "ca", "X", passphrase=None)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "intermediate"),
    [("", False), ("   ", False), ("测" * 22, False), ("测" * 18, True)],
)
def test_init_refuses_bad_names(tmp_path: Path, name: str, intermediate: bool) -> None:
    with pytest.raises(InputError) as info:
        CertificateAuthority.init(tmp_path / "ca", name, passphrase=None, intermediate=intermediate)
    assert info.value.code == "E_INPUT"
    assert list(tmp_path.iterdir()) == []


# --- issue: keys --------------------------------------------------------------------------------


def _ku(cert: x509.Certificate) -> x509.KeyUsage:
    ext = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ext.critical
    return ext.value


def test_issue_generates_ec_key_by_default(test_ca: CAFixture) -> None:
    issued = test_ca.issue("MZ330100")
    assert isinstance(issued.key, ec.EllipticCurvePrivateKey)
    assert isinstance(issued.key.curve, ec.SECP256R1)
    assert issued.certificate.public_key() == issued.key.public_key()
    ku = _ku(issued.certificate)
    assert ku.digital_signature and ku.key_agreement
    assert not ku.key_encipherment and not ku.key_cert_sign and not ku.crl_sign
    # The CA keeps a copy under certs/<SERIAL>.pem, the same bytes as the record.
    copy = test_ca.dir / "certs" / f"{issued.record.serial}.pem"
    assert copy.read_text() == issued.record.pem
    assert x509.load_pem_x509_certificate(copy.read_bytes()) == issued.certificate


def test_issue_rsa_key_with_cli_key_type(test_ca: CAFixture, tmp_path: Path) -> None:
    result = run_cli(
        "issue", "--ca-dir", test_ca.dir, "--dept", "RS330100", "--name", "杭州市人社局",
        "--key-type", "rsa", "--out", tmp_path,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    key = load_private_key(tmp_path / "RS330100.key")
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 3072
    cert = x509.load_pem_x509_certificate((tmp_path / "RS330100.pem").read_bytes())
    assert cert.public_key() == key.public_key()
    ku = _ku(cert)
    assert ku.digital_signature and ku.key_encipherment
    assert not ku.key_agreement


def test_issue_from_csr_binds_csr_key_not_csr_subject(test_ca: CAFixture, tmp_path: Path) -> None:
    key = certgen.new_key()
    csr = parse_csr(make_csr(key))  # asks for CN=evil, serialNumber=ROOT, CA:TRUE, DNS SAN
    issued = test_ca.issue("RS330100", "杭州市人社局", ("10.33.2.0/24",), csr=csr)
    cert = issued.certificate
    assert issued.key is None
    assert cert.public_key() == key.public_key()
    assert cert.subject == end_entity_name(DeptCode("RS330100"), "杭州市人社局", Role.DEPARTMENT)
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == []
    assert san.get_values_for_type(x509.RFC822Name) == ["RS330100"]


def test_issue_from_csr_via_cli_writes_no_key(test_ca: CAFixture, tmp_path: Path) -> None:
    key = certgen.new_key()
    (tmp_path / "req.csr").write_bytes(make_csr(key))
    out = tmp_path / "out"
    result = run_cli(
        "issue", "--ca-dir", test_ca.dir, "--dept", "RS330100", "--name", "人社",
        "--csr", tmp_path / "req.csr", "--out", out, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["key"] is None
    assert sorted(p.name for p in out.iterdir()) == ["RS330100.pem"]
    cert = x509.load_pem_x509_certificate((out / "RS330100.pem").read_bytes())
    assert cert.public_key() == key.public_key()


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1()])
def test_parse_csr_accepts_supported_ec_curves(curve: ec.EllipticCurve) -> None:
    key = ec.generate_private_key(curve)
    assert parse_csr(make_csr(key)).public_key() == key.public_key()


def test_parse_csr_accepts_der() -> None:
    key = certgen.new_key()
    der = x509.load_pem_x509_csr(make_csr(key)).public_bytes(serialization.Encoding.DER)
    assert parse_csr(der).public_key() == key.public_key()


# --- issue: the certificate profile ----------------------------------------------------------


def _ext(
    cert: x509.Certificate, cls: type[x509.ExtensionType]
) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_class(cls)


def test_department_profile(tmp_path: Path) -> None:
    fx = make_ca(tmp_path / "ca", intermediate=True, now=NOW)
    issued = fx.issue(
        "MZ330100", "杭州市民政局", ("10.33.1.0/24", "10.33.9.7", "2001:db8::/48", "2001:db8:1::5"),
        now=NOW,
    )  # fmt: skip
    fx.ca.close()
    cert = issued.certificate
    # Subject: C, OU=role, serialNumber=code, CN=name, in this order.
    assert [(a.oid, a.value) for a in cert.subject] == [
        (NameOID.COUNTRY_NAME, "CN"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "department"),
        (NameOID.SERIAL_NUMBER, "MZ330100"),
        (NameOID.COMMON_NAME, "杭州市民政局"),
    ]
    # The Chinese name is a UTF8String (tag 0x0c), not T61/BMP or escaped bytes.
    name = "杭州市民政局".encode()
    assert b"\x0c" + bytes([len(name)]) + name in cert.subject.public_bytes()
    assert cert.issuer == fx.ca.intermediate.subject  # type: ignore[union-attr]
    # SAN: the login name, and iPAddress only for single hosts (not for networks).
    san = _ext(cert, x509.SubjectAlternativeName).value
    assert isinstance(san, x509.SubjectAlternativeName)
    assert san.get_values_for_type(x509.RFC822Name) == ["MZ330100"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == [
        "10.33.9.7",
        "2001:db8:1::5",
    ]
    # The registered-networks extension carries everything, as CIDRs, non-critical.
    nets = _ext_by_oid(cert, OID_REGISTERED_NETWORKS)
    assert not nets.critical
    assert isinstance(nets.value, x509.UnrecognizedExtension)
    assert [str(n) for n in decode_networks(nets.value.value)] == [
        "10.33.1.0/24",
        "10.33.9.7/32",
        "2001:db8::/48",
        "2001:db8:1::5/128",
    ]
    eku = _ext(cert, x509.ExtendedKeyUsage).value
    assert isinstance(eku, x509.ExtendedKeyUsage)
    assert set(eku) == {
        ExtendedKeyUsageOID.CLIENT_AUTH,
        OID_SECURE_SHELL_CLIENT,
        ExtendedKeyUsageOID.EMAIL_PROTECTION,
    }
    assert OID_SECURE_SHELL_CLIENT.dotted_string == "1.3.6.1.5.5.7.3.21"
    bc = _ext(cert, x509.BasicConstraints)
    assert bc.critical
    assert isinstance(bc.value, x509.BasicConstraints)
    assert bc.value.ca is False
    aki = _ext(cert, x509.AuthorityKeyIdentifier).value
    ski = _ext(fx.ca.intermediate, x509.SubjectKeyIdentifier).value  # type: ignore[arg-type]
    assert isinstance(aki, x509.AuthorityKeyIdentifier)
    assert isinstance(ski, x509.SubjectKeyIdentifier)
    assert aki.key_identifier == ski.digest
    # Default validity: 365 days from now, starting 5 minutes back.
    assert cert.not_valid_before_utc == NOW - dt.timedelta(minutes=5)
    assert cert.not_valid_after_utc == NOW + dt.timedelta(days=365)
    assert issued.record.not_after == cert.not_valid_after_utc
    # The chain handed out is leaf then intermediate (never the root).
    assert issued.chain == (cert, fx.ca.intermediate)


def _ext_by_oid(
    cert: x509.Certificate, oid: x509.ObjectIdentifier
) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_oid(oid)


def test_node_profile(inter_ca: CAFixture) -> None:
    issued = inter_ca.issue(
        "NODE01", "杭州核对节点", ("10.33.0.10",), role=Role.NODE, dns_names=["exchange.hz.example"]
    )
    cert = issued.certificate
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "node"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {
        ExtendedKeyUsageOID.CLIENT_AUTH,
        OID_SECURE_SHELL_CLIENT,
        ExtendedKeyUsageOID.EMAIL_PROTECTION,
        ExtendedKeyUsageOID.SERVER_AUTH,
        OID_SECURE_SHELL_SERVER,
    }
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["exchange.hz.example"]
    assert issued.record.role == "node"


def test_department_is_not_server(test_ca: CAFixture) -> None:
    eku = test_ca.issue("MZ1").certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert ExtendedKeyUsageOID.SERVER_AUTH not in eku.value
    assert OID_SECURE_SHELL_SERVER not in eku.value


def test_issue_without_networks_has_no_network_extension(test_ca: CAFixture) -> None:
    cert = test_ca.issue("MZ1", ips=()).certificate
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_oid(OID_REGISTERED_NETWORKS)


def test_validity_is_capped_by_the_issuing_ca(inter_ca: CAFixture) -> None:
    inter = inter_ca.ca.intermediate
    assert inter is not None
    late = inter.not_valid_after_utc - 10 * DAY
    issued = inter_ca.issue("MZ1", days=365, now=late)
    assert issued.certificate.not_valid_after_utc == inter.not_valid_after_utc


@pytest.mark.parametrize("days", [0, -1, 3651])
def test_issue_refuses_bad_days(test_ca: CAFixture, days: int) -> None:
    with pytest.raises(InputError):
        test_ca.issue("MZ1", days=days)
    assert test_ca.ca.records() == []


@pytest.mark.parametrize("days", [1, 3650])
def test_issue_days_bounds(tmp_path: Path, days: int) -> None:
    fx = make_ca(tmp_path / "ca", now=NOW)
    cert = fx.issue("MZ1", days=days, now=NOW).certificate
    fx.ca.close()
    assert cert.not_valid_after_utc == NOW + days * DAY


def test_code_with_underscore_issues_and_verifies(test_ca: CAFixture) -> None:
    """'_' is a valid department code character but not a PrintableString character."""
    issued = test_ca.issue("GX_01", "广西测试")
    ident = verify_certificate(
        issued.certificate, test_ca.trust(), now=dt.datetime.now(dt.UTC), chain=()
    )
    assert ident.code == "GX_01"


def test_chinese_name_length_limit(test_ca: CAFixture) -> None:
    """A certificate's CN holds 64 UTF-8 bytes: 21 Chinese characters fit, 22 do not."""
    ok = "测" * 21
    assert test_ca.issue("MZ1", ok).record.name == ok
    before = snapshot(test_ca.dir)
    with pytest.raises(InputError) as info:
        test_ca.issue("MZ2", "测" * 22)
    assert "too long" in info.value.message
    assert snapshot(test_ca.dir) == before


# --- renewal and duplicates -------------------------------------------------------------------


def test_second_live_certificate_needs_renew(test_ca: CAFixture) -> None:
    first = test_ca.issue("MZ330100")
    with pytest.raises(CAError) as info:
        test_ca.issue("MZ330100")
    assert info.value.code == "E_DUPLICATE"
    assert first.record.serial in info.value.message
    assert "--renew" in info.value.message
    # Another department is not affected.
    test_ca.issue("RS330100")


def test_renew_gives_a_second_live_certificate(test_ca: CAFixture) -> None:
    first = test_ca.issue("MZ330100")
    second = test_ca.issue("MZ330100", renew=True)
    assert second.record.renewal_of == first.record.serial
    assert first.record.renewal_of is None
    now = dt.datetime.now(dt.UTC)
    live = [r for r in test_ca.ca.db.by_dept("MZ330100") if r.is_live(now)]
    assert [r.serial for r in live] == [first.record.serial, second.record.serial]
    trust = test_ca.trust()
    for issued in (first, second):
        verify_certificate(issued.certificate, trust, now=now)


def test_renewal_names_the_newest_certificate(test_ca: CAFixture) -> None:
    """Several renewals within one second: each renews the one issued just before it."""
    serials = [test_ca.issue("MZ330100", now=NOW).record.serial]
    for _ in range(5):
        rec = test_ca.issue("MZ330100", renew=True, now=NOW).record
        assert rec.renewal_of == serials[-1]
        serials.append(rec.serial)
    assert [r.serial for r in test_ca.ca.records()] == serials


def test_renew_without_live_certificate_fails(test_ca: CAFixture) -> None:
    with pytest.raises(CAError) as info:
        test_ca.issue("MZ330100", renew=True)
    assert info.value.code == "E_NOT_FOUND"
    first = test_ca.issue("MZ330100")
    test_ca.ca.revoke(serial=first.record.serial)
    with pytest.raises(CAError):
        test_ca.issue("MZ330100", renew=True)
    # After revocation a plain issue is what the operator needs.
    assert test_ca.issue("MZ330100").record.renewal_of is None


def test_expired_certificate_does_not_block_a_new_one(test_ca: CAFixture) -> None:
    test_ca.issue("MZ330100", days=1, now=NOW)
    later = NOW + 2 * DAY
    assert test_ca.issue("MZ330100", now=later).record.renewal_of is None
    with pytest.raises(CAError):
        test_ca.issue("MZ330100", renew=False, now=later)


# --- revoke -----------------------------------------------------------------------------------


def test_revoke_by_dept_revokes_every_live_certificate(test_ca: CAFixture) -> None:
    expired = test_ca.issue("MZ330100", days=1, now=NOW)
    later = NOW + 3 * DAY
    a = test_ca.issue("MZ330100", now=later)
    b = test_ca.issue("MZ330100", renew=True, now=later)
    other = test_ca.issue("RS330100", now=later)
    reason = parse_reason("affiliationChanged")
    done = test_ca.ca.revoke(dept=DeptCode("MZ330100"), reason=reason, now=later)
    assert {r.serial for r in done} == {a.record.serial, b.record.serial}
    for rec in done:
        assert rec.revoked_at == later
        assert rec.revocation_reason == "affiliationChanged"
    db = test_ca.ca.db
    assert db.get(expired.record.serial).revoked_at is None  # type: ignore[union-attr]
    assert db.get(other.record.serial).revoked_at is None  # type: ignore[union-attr]
    with pytest.raises(CAError) as info:
        test_ca.ca.revoke(dept=DeptCode("MZ330100"), now=later)
    assert info.value.code == "E_NOT_FOUND"


def test_revoke_errors_change_nothing(test_ca: CAFixture) -> None:
    issued = test_ca.issue("MZ330100")
    test_ca.ca.revoke(serial=issued.record.serial)
    before = snapshot(test_ca.dir)
    events = test_ca.ca.db.check_integrity()
    cases: list[tuple[dict[str, object], type[Exception], str]] = [
        ({"serial": parse_serial("DEADBEEF")}, CAError, "E_UNKNOWN_SERIAL"),
        ({"serial": issued.record.serial}, CAError, "E_ALREADY_REVOKED"),
        ({}, InputError, "E_INPUT"),
        ({"serial": issued.record.serial, "dept": DeptCode("MZ330100")}, InputError, "E_INPUT"),
    ]
    for kwargs, cls, code in cases:
        with pytest.raises(cls) as info:
            test_ca.ca.revoke(**kwargs)  # type: ignore[arg-type]
        assert info.value.code == code  # type: ignore[attr-defined]
    assert test_ca.ca.db.check_integrity() == events
    assert snapshot(test_ca.dir) == before


@pytest.mark.parametrize(
    ("text", "serial"),
    [("0a:1b", "A1B"), ("0x0A1B", "A1B"), ("a1b", "A1B"), (" 00A1B ", "A1B")],
)
def test_parse_serial_normalises(text: str, serial: str) -> None:
    assert parse_serial(text) == serial


@pytest.mark.parametrize("text", ["keyCompromise", "key-compromise", "KEY_COMPROMISE"])
def test_parse_reason_spellings(text: str) -> None:
    assert parse_reason(text) is x509.ReasonFlags.key_compromise


def test_parse_reason_refuses_hold() -> None:
    with pytest.raises(InputError) as info:
        parse_reason("certificateHold")
    assert info.value.code == "E_REASON"


# --- CRLs -------------------------------------------------------------------------------------


def _numbers(path: Path) -> list[int]:
    return [c.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number for c in load_crls(path)]  # fmt: skip


def test_crl_numbers_strictly_increase_across_calls_and_reopen(inter_ca: CAFixture) -> None:
    seen = [_numbers(inter_ca.dir / "crl.pem")]
    for _ in range(3):
        inter_ca.ca.crl()
        seen.append(_numbers(inter_ca.dir / "crl.pem"))
    inter_ca.ca.close()
    for _ in range(2):
        ca = CertificateAuthority.open(inter_ca.dir)
        ca.crl()
        ca.close()
        seen.append(_numbers(inter_ca.dir / "crl.pem"))
    inter_ca.ca = CertificateAuthority.open(inter_ca.dir)
    for label in (0, 1):  # the intermediate's CRL, then the root's
        column = [numbers[label] for numbers in seen]
        assert column == sorted(set(column)), column
        assert column[0] == 1
        assert column[-1] == 6


def test_crl_times(test_ca: CAFixture) -> None:
    t = NOW + 40 * DAY
    pem = test_ca.ca.crl(days=3, now=t)
    [crl] = load_crls(test_ca.dir / "crl.pem")
    assert pem == (test_ca.dir / "crl.pem").read_bytes()
    assert crl.next_update_utc == t + 3 * DAY
    assert crl.last_update_utc == t - BACKDATE


@pytest.mark.parametrize("days", [0, 366])
def test_crl_refuses_bad_days(test_ca: CAFixture, days: int) -> None:
    before = snapshot(test_ca.dir)
    with pytest.raises(InputError):
        test_ca.ca.crl(days=days)
    assert snapshot(test_ca.dir) == before


def test_crl_lists_revocations_on_the_right_issuers_crl(inter_ca: CAFixture) -> None:
    keep = inter_ca.issue("MZ1")
    gone = inter_ca.issue("MZ2")
    t = dt.datetime.now(dt.UTC).replace(microsecond=0)
    inter_ca.ca.revoke(serial=gone.record.serial, reason=parse_reason("keyCompromise"), now=t)
    inter_ca.ca.crl(now=t)
    inter_crl, root_crl = load_crls(inter_ca.dir / "crl.pem")
    assert len(root_crl) == 0
    assert (
        inter_crl.get_revoked_certificate_by_serial_number(keep.certificate.serial_number) is None
    )
    entry = inter_crl.get_revoked_certificate_by_serial_number(gone.certificate.serial_number)
    assert entry is not None
    assert entry.revocation_date_utc == t
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason is x509.ReasonFlags.key_compromise


def test_wrong_passphrase_changes_nothing(tmp_path: Path) -> None:
    ca = CertificateAuthority.init(tmp_path / "ca", "X", passphrase=b"right", now=NOW)
    before = snapshot(tmp_path / "ca")
    for op in (
        lambda: ca.issue(DeptCode("MZ1"), "x", [], passphrase=b"wrong", now=NOW),
        lambda: ca.crl(passphrase=b"wrong", now=NOW),
    ):
        with pytest.raises(CAError) as info:
            op()
        assert info.value.code == "E_PASSPHRASE"
    assert snapshot(tmp_path / "ca") == before
    ca.issue(DeptCode("MZ1"), "x", [], passphrase=b"right", now=NOW)
    ca.close()


# --- list --expiring (CLI filter) ---------------------------------------------------------------


def test_list_expiring_filters(test_ca: CAFixture, tmp_path: Path) -> None:
    for dept, days in [("SOON", 10), ("LATER", 365), ("GONE", 5)]:
        result = run_cli(
            "issue", "--ca-dir", test_ca.dir, "--dept", dept, "--name", dept, "--days", str(days),
            "--out", tmp_path,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
    assert run_cli("revoke", "--ca-dir", test_ca.dir, "--dept", "GONE", "--yes").exit_code == 0

    def listed(*extra: str) -> list[str]:
        result = run_cli("list", "--ca-dir", test_ca.dir, "--json", *extra)
        assert result.exit_code == 0, result.output
        return [r["dept"] for r in json.loads(result.stdout)]

    assert listed() == ["SOON", "LATER", "GONE"]
    assert listed("--expiring", "30") == ["SOON"]  # revoked ones are not "expiring"
    assert listed("--expiring", "400") == ["SOON", "LATER"]
    assert listed("--expiring", "5") == []


# --- concurrency ------------------------------------------------------------------------------


def test_concurrent_issuance_from_separate_processes(test_ca: CAFixture, tmp_path: Path) -> None:
    depts = [f"DEPT{i:02d}" for i in range(6)]
    procs = [
        subprocess.Popen(
            [
                *exchange_pki(),
                "issue",
                "--ca-dir",
                str(test_ca.dir),
                "--dept",
                dept,
                "--name",
                f"部门{dept}",
                "--out",
                str(tmp_path / dept),
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for dept in depts
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode(errors="replace")
        json.loads(out)
    test_ca.ca.close()
    ca = CertificateAuthority.open(test_ca.dir)  # re-walks the event chain
    try:
        assert sorted(r.dept for r in ca.records()) == depts
        # init + first CRL + one issue event per process, in one unbroken chain
        assert ca.db.check_integrity(test_ca.dir / "certs") == 2 + len(depts)
        assert len(list((test_ca.dir / "certs").glob("*.pem"))) == len(depts)
        trust = TrustStore((ca.root,), (), tuple(load_crls(test_ca.dir / "crl.pem")))
        now = dt.datetime.now(dt.UTC)
        for dept in depts:
            cert = x509.load_pem_x509_certificate((tmp_path / dept / f"{dept}.pem").read_bytes())
            assert verify_certificate(cert, trust, now=now).code == dept
    finally:
        ca.close()
    test_ca.ca = CertificateAuthority.open(test_ca.dir)
