"""``exchange-pki bundle ...``: seal, verify and open bundle files by hand (issue 3).

A thin adapter around :mod:`pki.bundle`: it loads files, reads the key passphrase from the
environment (``pki.keys.load_private_key``), shows a progress bar on a terminal and prints
results; all checks live in the library.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shlex
from pathlib import Path
from typing import Annotated, Any

import typer
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from exchange_common.cli import (
    EXIT_CODES_HELP,
    byte_progress,
    console,
    emit_json,
    err_console,
    fail_on_error,
    parse_time,
)
from exchange_common.errors import InputError
from exchange_common.fs import atomic_write
from pki._bundle_format import SIG_RSA_PSS
from pki.bundle import (
    DEFAULT_TTL,
    BundleKind,
    Member,
    VerifiedBundle,
    open_bundle,
    seal_to_file,
    signature_parts,
    verify,
)
from pki.keys import certificate_pem, fingerprint, load_certificates, load_private_key
from pki.verify import TrustStore, verify_certificate

bundle_app = typer.Typer(
    name="bundle",
    help=(
        "Seal, verify and open exchange bundles by hand (signed and encrypted files, format "
        f"v1: docs/bundle-format.md).\n\n{EXIT_CODES_HELP}"
    ),
    no_args_is_help=True,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
AtOpt = Annotated[
    str | None, typer.Option("--at", help="Check at this ISO 8601 time instead of now.")
]
TrustOpt = Annotated[
    Path, typer.Option("--trust", help="Trusted root certificate(s), PEM (the ministry root).")
]
CrlOpt = Annotated[
    Path | None,
    typer.Option("--crl", help="CRL file (PEM). Default: crl.pem beside the --trust file."),
]

#: Show a progress bar for inputs at least this large (and only on a terminal).


def _trust(trust: Path, crl: Path | None) -> TrustStore:
    if crl is None:
        beside = trust.parent / "crl.pem"
        crl = beside if beside.is_file() else None
    if crl is None:
        err_console.print(
            "warning: no --crl given and no crl.pem beside the trust file: revocation cannot be "
            "checked, so every bundle will be refused (E_CRL_MISSING)",
            markup=False,
        )
    return TrustStore.from_files(trust, crl)


def _verified_json(vb: VerifiedBundle) -> dict[str, Any]:
    h = vb.header
    return {
        "valid": True,
        "bundle_id": str(h.bundle_id),
        "kind": h.kind.value,
        "created_at": h.created_at.isoformat(),
        "expires_at": h.expires_at.isoformat(),
        "sender": {
            "dept": vb.sender.code,
            "name": vb.sender.name,
            "role": vb.sender.role.value,
            "serial": vb.sender.serial,
            "fingerprint_sha256": vb.sender.fingerprint,
        },
        "recipients": [r.fingerprint for r in h.recipients],
        "length": vb.length,
        "signed_length": vb.signed_length,
        "sha256": vb.sha256,
    }


def _print_verified(vb: VerifiedBundle) -> None:
    h = vb.header
    console.print(
        f"OK: bundle {h.bundle_id} ({h.kind.value}) from {vb.sender.code} {vb.sender.name} "
        f"(certificate {vb.sender.serial}), created {h.created_at:%Y-%m-%d %H:%M:%S} UTC, "
        f"expires {h.expires_at:%Y-%m-%d %H:%M:%S} UTC",
        markup=False,
    )
    console.print(f"  recipients  {len(h.recipients)}", markup=False)
    console.print(f"  size        {vb.length} bytes", markup=False)
    console.print(f"  sha256      {vb.sha256}", markup=False)


@bundle_app.command()
@fail_on_error
def seal(
    files: Annotated[list[Path], typer.Argument(help="Files to seal (one member each).")],
    cert: Annotated[Path, typer.Option("--cert", help="Sender certificate (chain) file, PEM.")],
    key: Annotated[Path, typer.Option("--key", help="Sender private key, PEM.")],
    to: Annotated[
        list[Path], typer.Option("--to", help="Recipient certificate, PEM (repeatable).")
    ],
    out: Annotated[Path, typer.Option("--out", help="Bundle file to write.")],
    kind: Annotated[
        BundleKind, typer.Option("--kind", help="Bundle kind.", case_sensitive=False)
    ] = BundleKind.FILE,
    fields_file: Annotated[
        Path | None,
        typer.Option("--fields", help="JSON file with kind-specific fields for the manifest."),
    ] = None,
    ttl_days: Annotated[
        int, typer.Option("--ttl-days", help="Days until the bundle expires.")
    ] = DEFAULT_TTL.days,
    trust: Annotated[
        Path | None,
        typer.Option("--trust", help="Also check sender and recipient certificates against it."),
    ] = None,
    crl: CrlOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --out file.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Sign and encrypt FILES into one bundle for the `--to` recipients.

    Each file becomes a member named after its base name. The bundle is signed with `--key`
    (the sender's certificate chain from `--cert` travels in it) and can be opened only by
    the holders of the `--to` certificates' keys. An encrypted key reads its passphrase from
    `EXCHANGE_KEY_PASSPHRASE`. The output appears atomically; nothing is left on failure.
    With `--trust` the sender and recipient certificates are checked (chain, validity,
    revocation) before sealing.

    **Examples**

        exchange-pki bundle seal --cert MZ330100.pem --key MZ330100.key --to NODE01.pem --out push.bundle households.csv

        exchange-pki bundle seal --cert MZ330100.pem --key MZ330100.key --to NODE01.pem --to RS330100.pem --kind query --fields application.json --out q.bundle persons.csv
    """
    now = dt.datetime.now(dt.UTC)
    chain = load_certificates(cert)
    signer_key = load_private_key(key)
    recipients = [load_certificates(p)[0] for p in to]
    if ttl_days < 1:
        raise InputError("--ttl-days must be at least 1")
    fields: dict[str, Any] | None = None
    if fields_file is not None:
        try:
            fields = json.loads(fields_file.read_text(encoding="utf-8"))
        except OSError as e:
            raise InputError(f"cannot read {fields_file}: {e.strerror}", code="E_NOT_FOUND") from e
        except ValueError as e:
            raise InputError(f"{fields_file} is not valid JSON: {e}") from e
        if not isinstance(fields, dict):
            raise InputError(f"{fields_file} must hold a JSON object")
    if trust is not None:
        store = _trust(trust, crl)
        verify_certificate(chain[0], store, now=now, chain=chain[1:], role=None)
        for path, rc in zip(to, recipients, strict=True):
            extra = load_certificates(path)[1:]
            verify_certificate(rc, store, now=now, chain=extra, role=None)
    members = [Member(p.name, p) for p in files]
    total = 0
    for p in files:
        with contextlib.suppress(OSError):
            total += p.stat().st_size
    with byte_progress(total, "sealing") as progress:
        result = seal_to_file(
            members,
            out,
            overwrite=force,
            signer_key=signer_key,
            signer_chain=chain,
            recipients=recipients,
            kind=kind,
            fields=fields,
            now=now,
            ttl=dt.timedelta(days=ttl_days),
            progress=progress,
        )
    if json_out:
        emit_json(
            {
                "bundle": str(out),
                "bundle_id": str(result.bundle_id),
                "kind": result.header.kind.value,
                "expires_at": result.header.expires_at.isoformat(),
                "members": [m.to_json() for m in result.manifest.members],
                "recipients": [fingerprint(c) for c in recipients],
                "length": result.length,
                "sha256": result.sha256,
            }
        )
    else:
        console.print(
            f"sealed {len(members)} file(s) into {out} for {len(recipients)} recipient(s): "
            f"bundle {result.bundle_id}, {result.length} bytes",
            markup=False,
        )
        console.print(f"  sha256  {result.sha256}", markup=False)


@bundle_app.command("verify")
@fail_on_error
def verify_cmd(
    bundle: Annotated[Path, typer.Argument(help="Bundle file to check.")],
    trust: TrustOpt,
    crl: CrlOpt = None,
    at: AtOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Check a bundle's signature, sender certificate chain and revocation: no private key.

    For relays and auditors. Exit 0 when the signature over header and ciphertext, the
    sender's chain to `--trust`, the CRL and the bundle's expiry all check out; exit 1 with
    a reason code (E_SIGNATURE, E_CHAIN, E_REVOKED, E_EXPIRED, E_TRUNCATED, ...) otherwise.

    **Examples**

        exchange-pki bundle verify --trust root.pem --crl crl.pem push.bundle

        exchange-pki bundle verify --trust root.pem --crl crl.pem --at 2026-12-01T09:00:00+08:00 --json push.bundle
    """
    now = parse_time(at)
    store = _trust(trust, crl)
    size = bundle.stat().st_size if bundle.is_file() else 0
    with byte_progress(size, "verifying") as progress:
        vb = verify(bundle, store, now=now, progress=progress)
    if json_out:
        emit_json(_verified_json(vb))
    else:
        _print_verified(vb)


@bundle_app.command("open")
@fail_on_error
def open_cmd(
    bundle: Annotated[Path, typer.Argument(help="Bundle file to open.")],
    cert: Annotated[Path, typer.Option("--cert", help="Recipient certificate, PEM.")],
    key: Annotated[Path, typer.Option("--key", help="Recipient private key, PEM.")],
    trust: TrustOpt,
    out: Annotated[Path, typer.Option("--out", help="Folder to write the members into.")],
    crl: CrlOpt = None,
    at: AtOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Verify a bundle, decrypt it and write its members under `--out`.

    Everything is checked first (signature, chain, CRL, expiry, that the bundle is addressed
    to `--cert`, every member's size and SHA-256 against the manifest); the members appear
    in `--out` only after that, all at once, and never replace existing files. On failure
    the exit code is non-zero and nothing is written. An encrypted key reads its passphrase
    from `EXCHANGE_KEY_PASSPHRASE`.

    **Examples**

        exchange-pki bundle open --cert NODE01.pem --key NODE01.key --trust root.pem --crl crl.pem --out inbox/ push.bundle

        EXCHANGE_KEY_PASSPHRASE=... exchange-pki bundle open --cert RS330100.pem --key RS330100.key --trust root.pem --out q/ --json q.bundle
    """
    now = parse_time(at)
    store = _trust(trust, crl)
    recipient_cert = load_certificates(cert)[0]
    recipient_key = load_private_key(key)
    size = bundle.stat().st_size if bundle.is_file() else 0
    with byte_progress(2 * size, "opening") as progress:
        opened = open_bundle(
            bundle,
            out,
            recipient_key=recipient_key,
            recipient_cert=recipient_cert,
            trust=store,
            now=now,
            progress=progress,
        )
    if json_out:
        emit_json(
            {
                **_verified_json(opened.verified),
                "out": str(out),
                "members": [
                    {**m.to_json(), "path": str(p)}
                    for m, p in zip(opened.manifest.members, opened.paths, strict=True)
                ],
                "fields": dict(opened.manifest.fields),
            }
        )
    else:
        _print_verified(opened.verified)
        console.print(f"wrote {len(opened.paths)} file(s) to {out}:", markup=False)
        for m, p in zip(opened.manifest.members, opened.paths, strict=True):
            records = f", {m.records} records" if m.records is not None else ""
            console.print(f"  {p}  {m.size} bytes, {m.media_type}{records}", markup=False)


@bundle_app.command("extract-signature")
@fail_on_error
def extract_signature(
    bundle: Annotated[Path, typer.Argument(help="Bundle file.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the extracted pieces.")],
    json_out: JsonOpt = False,
) -> None:
    """Write a bundle's signature pieces for checking with stock OpenSSL (nothing is verified).

    Writes `sig.der` (the signature), `signer.pem` and `signer.der` (the sender
    certificate), `pub.pem` (its public key), `chain.pem` (intermediates, if any) and
    `pieces.env` (shell variables: SIGNED_LENGTH, DGST_OPTS, ...), and prints the two
    `openssl` commands that check the signature and the certificate chain. The same pieces
    can be cut with coreutils alone: see docs/bundle-format.md.

    **Example**

        exchange-pki bundle extract-signature push.bundle --out sig/ && . sig/pieces.env && head -c "$SIGNED_LENGTH" push.bundle | openssl dgst -sha256 $DGST_OPTS -verify sig/pub.pem -signature sig/sig.der
    """
    parts = signature_parts(bundle)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create {out}: {e.strerror}", code="E_IO") from e
    certs = [x509.load_der_x509_certificate(der) for der in parts.chain]
    leaf = certs[0]
    pub = leaf.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    dgst_opts = (
        "-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32"
        if parts.signature_alg == SIG_RSA_PSS
        else ""
    )
    atomic_write(out / "sig.der", parts.signature)
    atomic_write(out / "signer.der", parts.chain[0])
    atomic_write(out / "signer.pem", certificate_pem(leaf))
    atomic_write(out / "pub.pem", pub)
    if len(certs) > 1:
        atomic_write(out / "chain.pem", certificate_pem(certs[1:]))
    env = {
        "BUNDLE": str(bundle),
        "SIGNED_LENGTH": str(parts.signed_length),
        "SIG_LEN": str(len(parts.signature)),
        "CHAIN_LEN": str(sum(len(c) for c in parts.chain)),
        "SIGNATURE_ALG": parts.signature_alg,
        "DGST_OPTS": dgst_opts,
        "SIG": str(out / "sig.der"),
        "PUB": str(out / "pub.pem"),
        "SIGNER": str(out / "signer.pem"),
        "UNTRUSTED": str(out / "chain.pem") if len(certs) > 1 else "",
    }
    atomic_write(
        out / "pieces.env",
        "".join(f"{k}={shlex.quote(v)}\n" for k, v in env.items()).encode(),
    )
    dgst_cmd = (
        f"head -c {parts.signed_length} {shlex.quote(str(bundle))} | openssl dgst -sha256 "
        f"{dgst_opts + ' ' if dgst_opts else ''}-verify {shlex.quote(env['PUB'])} "
        f"-signature {shlex.quote(env['SIG'])}"
    )
    untrusted = f"-untrusted {shlex.quote(env['UNTRUSTED'])} " if env["UNTRUSTED"] else ""
    chain_cmd = (
        f"openssl verify -CAfile ROOT.pem {untrusted}-crl_check_all -CRLfile CRL.pem "
        f"{shlex.quote(env['SIGNER'])}"
    )
    if json_out:
        emit_json({**env, "commands": [dgst_cmd, chain_cmd]})
    else:
        console.print(
            f"wrote signature pieces of bundle {parts.header.bundle_id} to {out}", markup=False
        )
        console.print("check the signature (prints 'Verified OK'):", markup=False)
        console.print(f"  {dgst_cmd}", markup=False)
        console.print("check the sender certificate chain and revocation:", markup=False)
        console.print(f"  {chain_cmd}", markup=False)
