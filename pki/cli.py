"""``exchange-pki``: the ministry operator's certificate authority tool (部收入认定中心)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from exchange_common.cli import (
    EXIT_CODES_HELP,
    VersionOpt,
    console,
    emit_json,
    err_console,
    error_json,
    fail_on_error,
    parse_time,
    prompt_passphrase,
)
from exchange_common.errors import CAError, CertificateError, InputError
from exchange_common.fs import atomic_write
from pki.audit_cli import audit_app
from pki.bundle_cli import bundle_app
from pki.ca import (
    CA_PASSPHRASE_ENV,
    DEFAULT_CERT_DAYS,
    DEFAULT_CRL_DAYS,
    CertificateAuthority,
    utcnow,
)
from pki.ca_input import parse_csr, parse_reason, parse_serial
from pki.identity import Role, parse_dept_code, parse_networks
from pki.keys import (
    KEY_PASSPHRASE_ENV,
    KeyType,
    certificate_pem,
    load_certificates,
    write_private_key,
)
from pki.revoke_prompt import confirm_revocation, describe_targets
from pki.verify import TrustStore, verify_certificate

app = typer.Typer(
    name="exchange-pki",
    help=(
        "Certificate authority for the social-assistance data exchange (社会救助信息共享): "
        "create the ministry root, issue, renew and revoke department and node certificates, "
        f"publish CRLs.\n\n{EXIT_CODES_HELP}"
    ),
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(version: VersionOpt = False) -> None:
    """Certificate authority for the social-assistance data exchange."""


CaDir = Annotated[Path, typer.Option("--ca-dir", help="CA directory.", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]


def _prepare_dir(path: Path) -> None:
    """Create an output directory (or accept an existing one); a clear error if impossible."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(
            f"cannot use {path} as output directory: {e.strerror or e}", code="E_IO"
        ) from e


def _warn_unencrypted(paths: list[Path], how: str) -> None:
    """Warn on stderr (also with ``--json``) that the private keys at ``paths`` are stored
    without a passphrase; ``how`` says how to get encrypted ones."""
    names = ", ".join(map(str, paths))
    if len(paths) == 1:
        what = f"private key {names} is NOT encrypted; the file is owner-only (mode 0600), but "
        what += "anyone who reads it holds the key."
    else:
        what = f"private keys {names} are NOT encrypted; the files are owner-only (mode 0600), "
        what += "but anyone who reads them holds the keys."
    err_console.print(f"warning: {what} {how}", markup=False)


def _open(ca_dir: Path) -> CertificateAuthority:
    return CertificateAuthority.open(ca_dir)


def _ca_passphrase() -> bytes | None:
    return prompt_passphrase(CA_PASSPHRASE_ENV)


@app.command()
@fail_on_error
def init(
    ca_dir: CaDir,
    name: Annotated[str, typer.Option("--name", help="CA name, e.g. 部收入认定中心.")],
    no_passphrase: Annotated[
        bool, typer.Option("--no-passphrase", help="Store CA keys unencrypted (tests only).")
    ] = False,
    intermediate: Annotated[
        bool, typer.Option("--intermediate", help="Also create an issuing intermediate CA.")
    ] = False,
    key_type: Annotated[
        KeyType, typer.Option("--key-type", help="ec (P-256) or rsa (3072).")
    ] = KeyType.EC,
    json_out: JsonOpt = False,
) -> None:
    """Create the ministry root CA (and optionally an issuing intermediate) in a new directory.

    Writes `DIR/root.pem` (the trust root every party configures), `DIR/intermediate.pem` with
    `--intermediate`, keys with mode 0600 encrypted with the passphrase from
    `EXCHANGE_PKI_PASSPHRASE` (or a prompt), the CA database and a first CRL.

    **Examples**

        EXCHANGE_PKI_PASSPHRASE=... exchange-pki init --ca-dir /srv/ca --name 部收入认定中心 --intermediate

        exchange-pki init --ca-dir /tmp/test-ca --name "Test CA" --no-passphrase
    """
    passphrase = None
    if not no_passphrase:
        passphrase = prompt_passphrase(CA_PASSPHRASE_ENV, confirm=True)
        if passphrase is None:
            raise InputError(
                f"no passphrase for the CA keys: set {CA_PASSPHRASE_ENV} or pass --no-passphrase",
                code="E_PASSPHRASE",
            )
    ca = CertificateAuthority.init(
        ca_dir, name, passphrase=passphrase, key_type=key_type, intermediate=intermediate
    )
    files = {"root": str(ca_dir / "root.pem"), "crl": str(ca_dir / "crl.pem")}
    if intermediate:
        files["intermediate"] = str(ca_dir / "intermediate.pem")
    if json_out:
        emit_json(
            {
                "ca_dir": str(ca_dir),
                "name": ca.config.name,
                "files": files,
                "encrypted": passphrase is not None,
            }
        )
    else:
        console.print(f"created CA {ca.config.name!r} in {ca_dir}", markup=False)
        for label, path in files.items():
            console.print(f"  {label:<13} {path}", markup=False)
    ca.close()
    if passphrase is None:
        keys = [ca_dir / "root.key", *([ca_dir / "intermediate.key"] if intermediate else [])]
        _warn_unencrypted(
            keys,
            "For encrypted CA keys run init without --no-passphrase (the passphrase comes from "
            f"{CA_PASSPHRASE_ENV} or a prompt); --no-passphrase is for test CAs.",
        )


@app.command()
@fail_on_error
def issue(
    ca_dir: CaDir,
    dept: Annotated[str, typer.Option("--dept", help="Department code (also the SFTP login).")],
    name: Annotated[str, typer.Option("--name", help="Department name, e.g. 杭州市民政局.")],
    out: Annotated[Path, typer.Option("--out", help="Output directory for CODE.pem / CODE.key.")],
    ip: Annotated[
        list[str] | None, typer.Option("--ip", help="Registered address or CIDR (repeatable).")
    ] = None,
    csr: Annotated[
        Path | None, typer.Option("--csr", help="Certify this CSR's key instead of generating one.")
    ] = None,
    node: Annotated[
        bool, typer.Option("--node", help="Issue a node (server) certificate.")
    ] = False,
    dns: Annotated[
        list[str] | None,
        typer.Option("--dns", help="Host name for a node certificate (repeatable)."),
    ] = None,
    days: Annotated[int, typer.Option("--days", help="Validity in days.")] = DEFAULT_CERT_DAYS,
    renew: Annotated[
        bool, typer.Option("--renew", help="Issue a successor while the current one is live.")
    ] = False,
    key_type: Annotated[
        KeyType | None, typer.Option("--key-type", help="Key type when generating (default: CA's).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Issue a department (or node) certificate.

    The certificate carries the department code (subject serialNumber, SAN rfc822Name), the
    name (UTF-8), the registered IP addresses/CIDRs (部省 第五条), and key usages for bundle
    signing, key agreement and SSH X.509 login. Writes `OUT/CODE.pem` (certificate, then the
    issuing intermediate if any) and, without `--csr`, `OUT/CODE.key` (mode 0600, encrypted
    with `EXCHANGE_KEY_PASSPHRASE` when set). A second live certificate for the same
    department needs `--renew`.

    **Examples**

        exchange-pki issue --ca-dir /srv/ca --dept MZ330100 --name 杭州市民政局 --ip 10.33.1.0/24 --out certs/

        exchange-pki issue --ca-dir /srv/ca --dept RS330100 --name 杭州市人社局 --csr rs.csr --out certs/

        exchange-pki issue --ca-dir /srv/ca --dept NODE01 --name 杭州核对节点 --node --dns exchange.example --out certs/
    """
    code = parse_dept_code(dept)
    networks = parse_networks(ip or [])
    parsed_csr = None
    if csr is not None:
        try:
            data = csr.read_bytes()
        except OSError as e:
            raise InputError(f"cannot read CSR {csr}: {e.strerror}", code="E_NOT_FOUND") from e
        parsed_csr = parse_csr(data)
        if key_type is not None:
            raise InputError("--key-type applies only when no --csr is given")
    cert_path = out / f"{code}.pem"
    key_path = out / f"{code}.key"
    # Make sure the output can be written before the CA records anything: a certificate whose
    # freshly generated key cannot be saved would be live, recorded and unusable.
    _prepare_dir(out)
    for path in (cert_path, *(() if csr else (key_path,))):
        if path.exists():
            raise InputError(f"refusing to overwrite {path}", code="E_EXISTS")
    ca = _open(ca_dir)
    try:
        result = ca.issue(
            code,
            name,
            networks,
            role=Role.NODE if node else Role.DEPARTMENT,
            csr=parsed_csr,
            key_type=key_type,
            days=days,
            renew=renew,
            dns_names=dns or [],
            passphrase=_ca_passphrase(),
        )
    finally:
        ca.close()
    key_passphrase = None
    if result.key is not None:
        env = os.environ.get(KEY_PASSPHRASE_ENV)
        key_passphrase = env.encode() if env else None
        write_private_key(key_path, result.key, key_passphrase)
    atomic_write(cert_path, certificate_pem(result.chain))
    if result.key is not None and key_passphrase is None:
        _warn_unencrypted(
            [key_path],
            f"For an encrypted key set {KEY_PASSPHRASE_ENV} before issuing; better, let the "
            "department make its own key and issue from its CSR (--csr): the key then never "
            "leaves the department. Hand this file over on encrypted media and delete the copy.",
        )
    rec = result.record
    if json_out:
        emit_json(
            {
                **rec.as_json(utcnow()),
                "certificate": str(cert_path),
                "key": str(key_path) if result.key is not None else None,
                "key_encrypted": None if result.key is None else key_passphrase is not None,
                "networks": [str(n) for n in networks],
            }
        )
    else:
        console.print(
            f"issued {rec.role} certificate {rec.serial} for {rec.dept} {rec.name} "
            f"valid until {rec.not_after:%Y-%m-%d}",
            markup=False,
        )
        console.print(f"  certificate  {cert_path}", markup=False)
        if result.key is not None:
            console.print(f"  private key  {key_path}", markup=False)


@app.command()
@fail_on_error
def revoke(
    ca_dir: CaDir,
    serial: Annotated[str | None, typer.Option("--serial", help="Serial (hex) to revoke.")] = None,
    dept: Annotated[
        str | None, typer.Option("--dept", help="Revoke every live certificate of this department.")
    ] = None,
    reason: Annotated[
        str,
        typer.Option(
            "--reason",
            help="keyCompromise, affiliationChanged, superseded, "
            "cessationOfOperation, privilegeWithdrawn or unspecified.",
        ),
    ] = "unspecified",
    yes: Annotated[
        bool,
        typer.Option("--yes", "-y", help="Do not ask for confirmation (scripts)."),
    ] = False,
    allow_node: Annotated[
        bool,
        typer.Option(
            "--allow-node",
            help="Also revoke a node (server) certificate: that node's exchange with every "
            "department stops at the next CRL.",
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Revoke a certificate; relying parties learn of it from the next `exchange-pki crl`.

    First shows what it would revoke (name, department code, profile, serial, subject,
    validity) and asks on the terminal; answering no (the default) revokes nothing and exits 1.
    `--yes` skips the question; without a terminal and without `--yes` the command refuses
    (exit 2). A node (server) certificate is revoked only with `--allow-node`, even with
    `--yes` (`E_NODE_CERT` otherwise). An unknown serial is `E_UNKNOWN_SERIAL`.

    **Examples**

        exchange-pki revoke --ca-dir /srv/ca --serial 4F1A2B... --reason keyCompromise

        exchange-pki revoke --ca-dir /srv/ca --dept MZ330100 --reason affiliationChanged --yes

        exchange-pki revoke --ca-dir /srv/ca --serial 7C3E91... --reason superseded --allow-node
    """
    flag = parse_reason(reason)
    ser = parse_serial(serial) if serial is not None else None
    code = parse_dept_code(dept) if dept is not None else None
    ca = _open(ca_dir)
    try:
        targets = ca.revocation_targets(serial=ser, dept=code, allow_node=allow_node)
        confirm_revocation(describe_targets(targets, flag, utcnow()), yes=yes)
        recs = ca.revoke(
            serial=ser,
            dept=code,
            reason=flag,
            allow_node=allow_node,
            expected=[t.serial for t in targets],
        )
    finally:
        ca.close()
    if json_out:
        emit_json([r.as_json(utcnow()) for r in recs])
    else:
        for r in recs:
            console.print(
                f"revoked {r.serial} ({r.role} {r.dept} {r.name}, valid until "
                f"{r.not_after:%Y-%m-%d}): {r.revocation_reason}",
                markup=False,
            )
        console.print("publish it: exchange-pki crl --ca-dir ... --out ...", markup=False)


@app.command()
@fail_on_error
def crl(
    ca_dir: CaDir,
    out: Annotated[Path, typer.Option("--out", help="Where to write the CRL (PEM).")],
    days: Annotated[int, typer.Option("--days", help="Days until nextUpdate.")] = DEFAULT_CRL_DAYS,
    json_out: JsonOpt = False,
) -> None:
    """Sign a fresh CRL (issuing CA first, then the root's if an intermediate issues).

    The CRL number increases by one every time. Relying parties refuse all certificates once
    the CRL passes its nextUpdate, so publish a new one well before that.

    **Examples**

        exchange-pki crl --ca-dir /srv/ca --out /srv/publish/crl.pem --days 7

        EXCHANGE_PKI_PASSPHRASE=... exchange-pki crl --ca-dir /srv/ca --out crl.pem --days 1
    """
    _prepare_dir(out.parent)
    ca = _open(ca_dir)
    try:
        pem = ca.crl(days=days, passphrase=_ca_passphrase())
        revoked = sum(1 for r in ca.records() if r.revoked_at is not None)
    finally:
        ca.close()
    atomic_write(out, pem)
    next_update = utcnow() + dt.timedelta(days=days)
    if json_out:
        emit_json({"out": str(out), "revoked": revoked, "next_update": next_update.isoformat()})
    else:
        console.print(
            f"wrote CRL to {out}: {revoked} revoked, next update before "
            f"{next_update:%Y-%m-%d %H:%M} UTC",
            markup=False,
        )


@app.command("list")
@fail_on_error
def list_(
    ca_dir: CaDir,
    expiring: Annotated[
        int | None, typer.Option("--expiring", help="Only live certificates ending within DAYS.")
    ] = None,
    dept: Annotated[str | None, typer.Option("--dept", help="Only this department.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """List issued certificates with their state.

    **Examples**

        exchange-pki list --ca-dir /srv/ca

        exchange-pki list --ca-dir /srv/ca --expiring 30 --json
    """
    now = utcnow()
    ca = _open(ca_dir)
    try:
        recs = ca.records()
    finally:
        ca.close()
    if dept is not None:
        recs = [r for r in recs if r.dept == dept]
    if expiring is not None:
        horizon = now + dt.timedelta(days=expiring)
        recs = [r for r in recs if r.is_live(now) and r.not_after <= horizon]
    if json_out:
        emit_json([r.as_json(now) for r in recs])
        return
    table = Table("serial", "dept", "name", "role", "state", "valid until", "renews")
    for r in recs:
        table.add_row(
            r.serial,
            r.dept,
            r.name,
            r.role,
            r.state(now),
            f"{r.not_after:%Y-%m-%d}",
            r.renewal_of or "",
        )
    # Never let rich shorten cells to fit 80 columns (its default when piped): operators copy
    # serials from here into `revoke --serial`, and a serial cut with "…" is useless.
    natural = console.measure(table, options=console.options.update_width(1000)).maximum
    Console(highlight=False, width=max(console.width, natural)).print(table)


@app.command()
@fail_on_error
def verify(
    cert: Annotated[Path, typer.Argument(help="Certificate (chain) file to check.")],
    ca_dir: CaDir,
    crl_file: Annotated[
        Path | None, typer.Option("--crl", help="CRL to check against (default: DIR/crl.pem).")
    ] = None,
    at: Annotated[str | None, typer.Option("--at", help="Check at this ISO time, not now.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Check a certificate: chain to this CA's root, validity, key usage and revocation.

    Exit 0 when valid; otherwise exit 1 with the reason. Revocations recorded in the CA
    database but not yet published in a CRL are reported too.

    **Examples**

        exchange-pki verify --ca-dir /srv/ca certs/MZ330100.pem

        exchange-pki verify --ca-dir /srv/ca --crl crl.pem --at 2027-06-01T00:00:00+08:00 MZ330100.pem
    """
    now = parse_time(at)
    ca = _open(ca_dir)
    try:
        certs = load_certificates(cert)
        trust = TrustStore.from_files(ca_dir / "root.pem", crl_file or ca_dir / "crl.pem")
        trust = TrustStore(trust.roots, ca.chain, trust.crls)
        identity = verify_certificate(certs[0], trust, now=now, chain=certs[1:], role=None)
        rec = ca.db.get(identity.serial)
        if rec is not None and rec.revoked_at is not None:
            raise CertificateError(
                "certificate has been revoked (recorded in the CA database; the CRL given does "
                "not list it yet)",
                code="E_REVOKED",
            )
        if rec is None:
            raise CAError(
                f"certificate {identity.serial} chains to this CA but is not in its database",
                code="E_CA_DB",
            )
    except CertificateError as e:
        if json_out:  # scripts get a verdict on stdout too, not only the error line
            emit_json({"valid": False, **error_json(e)})
        raise
    finally:
        ca.close()
    if json_out:
        emit_json(
            {
                "valid": True,
                "dept": identity.code,
                "name": identity.name,
                "role": identity.role.value,
                "serial": identity.serial,
                "not_after": identity.not_after.isoformat(),
                "networks": [str(n) for n in identity.networks],
                "fingerprint_sha256": identity.fingerprint,
            }
        )
    else:
        console.print(
            f"OK: {identity.code} {identity.name} ({identity.role.value}) serial {identity.serial}, "
            f"valid until {identity.not_after:%Y-%m-%d}",
            markup=False,
        )


app.add_typer(bundle_app, name="bundle")
app.add_typer(audit_app, name="audit")


def main() -> None:
    """Console-script entry point."""
    app()
