"""``exchange-client``: the department operator's tool (issue 5, first slice).

A thin adapter: it parses options, shows progress and prints results; the work lives in
:mod:`exchange_client.push`, :mod:`~exchange_client.pull`, :mod:`~exchange_client.enroll`.
Every deliberate failure is one ``error: ... (CODE)`` line and an exit code
(:func:`exchange_common.cli.fail_on_error`). No command prints member file names (they may carry
personal names): only counts, sizes, ids and codes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from exchange_client.config import ClientConfig, check_transport, load_config, save_config
from exchange_client.credentials import Credentials, load_credentials, trust_store
from exchange_client.enroll import import_certificate, init_directory
from exchange_client.offline import export_bundle, import_folder
from exchange_client.pull import PullOutcome, convert_opened, pull
from exchange_client.push import (
    PUSH_KINDS,
    RowsRejected,
    SealedBundle,
    parse_fields,
    prepare_inputs,
    seal_files,
    upload_bundle,
    wait_for_receipt,
)
from exchange_client.state import read_state
from exchange_client.tables import OUTPUT_FORMATS, ValidationReport
from exchange_common.cli import (
    EXIT_CODES_HELP,
    byte_progress,
    console,
    emit_json,
    err_console,
    fail_on_error,
)
from exchange_common.codes import lookup
from exchange_common.errors import InputError
from pki.bundle import BundleKind, open_bundle, verify
from pki.identity import parse_dept_code
from pki.keys import load_certificates, load_private_key

app = typer.Typer(
    name="exchange-client",
    help=(
        "Department client for the social-assistance data exchange: push sealed bundles to "
        "the node, pull receipts and results, check bundles offline.\n\n"
        f"{EXIT_CODES_HELP} push --wait: 0 accepted, 1 rejected, 5 network trouble or timeout."
    ),
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

DirOpt = Annotated[Path, typer.Option("--dir", help="The client directory (made by `init`).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
RetriesOpt = Annotated[
    int | None,
    typer.Option(
        "--retries", min=0, help="Attempts after a transient network failure (default: config, 4)."
    ),
]
KindOpt = Annotated[
    str, typer.Option("--kind", help="data, query, response, revocation or recheck.")
]
FieldOpt = Annotated[
    list[str] | None, typer.Option("--field", help="Manifest field KEY=VALUE (repeatable).")
]
FieldsJsonOpt = Annotated[
    Path | None, typer.Option("--fields-json", help="Manifest fields from a JSON object file.")
]
WaitOpt = Annotated[bool, typer.Option("--wait", help="Wait for the node's signed receipt.")]
TimeoutOpt = Annotated[
    float, typer.Option("--timeout", min=1, help="Seconds to wait for the receipt.")
]
EncodingOpt = Annotated[
    str | None,
    typer.Option("--encoding", help="CSV encoding (default: UTF-8 if it decodes, else GB18030)."),
]
ValidOnlyOpt = Annotated[
    bool,
    typer.Option("--valid-only", help="Seal only the valid rows of a table (drops reported)."),
]

#: Show a progress bar for inputs at least this large (and only on a terminal).


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _say_retry(json_out: bool) -> Callable[[BaseException, float], None]:
    def say(e: BaseException, delay: float) -> None:
        err_console.print(f"warning: {e}; retrying in {delay:.1f} s", markup=False)

    return say


@app.callback()
def _root() -> None:
    """Department client for the social-assistance data exchange."""


@app.command()
@fail_on_error
def init(
    directory: DirOpt,
    dept: Annotated[
        str | None, typer.Option("--dept", help="Department code, e.g. MZ330100.")
    ] = None,
    node_host: Annotated[
        str | None, typer.Option("--node-host", help="The node's host name or address.")
    ] = None,
    node_port: Annotated[int, typer.Option("--node-port", help="The node's SFTP port.")] = 22,
    trust: Annotated[
        Path | None, typer.Option("--trust", help="The ministry root certificate(s), PEM.")
    ] = None,
    cert: Annotated[
        Path | None, typer.Option("--cert", help="This department's certificate chain, PEM.")
    ] = None,
    key: Annotated[
        Path | None, typer.Option("--key", help="This department's private key, PEM.")
    ] = None,
    crl: Annotated[
        Path | None, typer.Option("--crl", help="CRL file (default: crl.pem beside --trust).")
    ] = None,
    node_cert: Annotated[
        Path | None,
        typer.Option("--node-cert", help="The node's certificate (copied; its SHA-256 is pinned)."),
    ] = None,
    ssh_key: Annotated[
        Path | None,
        typer.Option(
            "--ssh-key", help="Log in with this OpenSSH key instead of the X.509 certificate."
        ),
    ] = None,
    new_key: Annotated[
        bool,
        typer.Option(
            "--new-key", help="Generate a key and a CSR for the ministry (no certificate yet)."
        ),
    ] = False,
    import_cert: Annotated[
        Path | None,
        typer.Option(
            "--import-cert",
            help="Second step after --new-key: store the certificate the ministry issued.",
        ),
    ] = None,
    transport: Annotated[
        str,
        typer.Option(
            "--transport",
            help="SSH library: asyncssh (default) or paramiko (SSH-key login only).",
        ),
    ] = "asyncssh",
    json_out: JsonOpt = False,
) -> None:
    """Create a client directory for one department at one node.

    Checks every certificate now (trust root + CRL), copies the node certificate into the
    directory and pins its SHA-256, and writes `DIR/client.toml`. The node's SSH host key is
    pinned at the first successful connection (`DIR/known_hosts`). With `--new-key` it writes
    `DIR/CODE.key` (0600) and `DIR/CODE.csr`; send the CSR to the ministry, then run
    `init --dir DIR --import-cert CODE.pem`.

    **Examples**

        exchange-client init --dir ~/mz --dept MZ330100 --node-host node.example.gov.cn --node-port 2222 --trust root.pem --crl crl.pem --cert MZ330100.pem --key MZ330100.key --node-cert NODE01.pem

        exchange-client init --dir ~/mz --dept MZ330100 --node-host node.example.gov.cn --node-port 2222 --trust root.pem --node-cert NODE01.pem --new-key

        exchange-client init --dir ~/mz --import-cert MZ330100.pem
    """
    now = _now()
    if import_cert is not None:
        cfg = import_certificate(directory, import_cert, now=now)
        if json_out:
            emit_json({"dir": str(cfg.dir), "dept": cfg.dept, "certificate": str(cfg.cert)})
        else:
            console.print(f"certificate stored as {cfg.cert}; ready to push", markup=False)
        return
    missing = [
        name
        for name, value in (
            ("--dept", dept),
            ("--node-host", node_host),
            ("--trust", trust),
            ("--node-cert", node_cert),
        )
        if value is None
    ]
    if missing:
        raise InputError(f"init needs {', '.join(missing)}", code="E_USAGE")
    assert (
        dept is not None and node_host is not None and trust is not None and node_cert is not None
    )
    check_transport(transport, "ssh-key" if ssh_key is not None else "x509", "--transport")
    cfg, csr = init_directory(
        directory,
        dept=parse_dept_code(dept),
        node_host=node_host,
        node_port=node_port,
        trust=trust,
        node_cert=node_cert,
        cert=cert,
        key=key,
        crl=crl,
        ssh_key=ssh_key,
        new_key=new_key,
        now=now,
    )
    if transport != cfg.transport:
        cfg = dataclasses.replace(cfg, transport=transport)
        save_config(cfg)
    if json_out:
        emit_json(
            {
                "dir": str(cfg.dir),
                "dept": cfg.dept,
                "node": f"{cfg.node_host}:{cfg.node_port}",
                "node_fingerprint": cfg.node_fingerprint,
                "login": cfg.login,
                "csr": str(csr) if csr else None,
            }
        )
        return
    console.print(f"client directory ready: {cfg.dir}", markup=False)
    console.print(
        f"node {cfg.node_host}:{cfg.node_port}, certificate SHA-256 {cfg.node_fingerprint}",
        markup=False,
    )
    if csr is not None:
        console.print(
            f"send {csr} to the ministry; then: exchange-client init --dir {cfg.dir} --import-cert {cfg.dept}.pem",
            markup=False,
        )


#: At most this many invalid rows are listed per file (all are counted).
REPORT_LINES = 50


def _print_reports(reports: list[tuple[int, ValidationReport]], *, sent: bool = False) -> None:
    """Invalid rows on stderr: line, reason code, masked ID number only (never names)."""
    for position, r in reports:
        if not r.invalid:
            continue
        fate = "dropped (--valid-only)" if sent else "invalid"
        err_console.print(
            f"file {position}: {r.rows} row(s), {r.valid} valid, {r.invalid} {fate}",
            markup=False,
        )
        for p in r.problems[:REPORT_LINES]:
            err_console.print(f"  {p}", markup=False)
        if r.invalid > REPORT_LINES:
            err_console.print(f"  … and {r.invalid - REPORT_LINES} more", markup=False)


def _push_json(rec: Any, path: Path) -> dict[str, Any]:
    return {
        "bundle_id": rec.bundle_id,
        "kind": rec.kind,
        "members": rec.members,
        "size": rec.size,
        "sha256": rec.sha256,
        "file": str(path),
        "uploaded_at": rec.uploaded_at,
        "verdict": rec.verdict,
        "reason_code": rec.reason_code,
        "reason_text": _reason_text(rec.reason_code),
    }


def _reason_text(code: str | None) -> str | None:
    """The registry's sentence for a node's reason code (None when absent or unregistered)."""
    entry = lookup(code)
    return entry.peer_text if entry is not None else None


def _validate_and_seal(
    directory: Path,
    kind: str,
    files: list[Path],
    field: list[str] | None,
    fields_json: Path | None,
    encoding: str | None,
    valid_only: bool,
    extra_fields: dict[str, Any] | None = None,
) -> tuple[ClientConfig, Credentials, SealedBundle]:
    """What push, respond and export share: validate tables, check certificates, seal."""
    try:
        bundle_kind = BundleKind(kind)
    except ValueError as e:
        raise InputError(
            f"unknown kind {kind!r}: choose one of {', '.join(k.value for k in PUSH_KINDS)}"
        ) from e
    fields = {**parse_fields(field or [], fields_json), **(extra_fields or {})}
    cfg = load_config(directory)
    creds = load_credentials(cfg)
    with tempfile.TemporaryDirectory(prefix=".validated-", dir=cfg.dir) as work:
        try:
            inputs, reports = prepare_inputs(
                files, bundle_kind, Path(work), encoding=encoding, valid_only=valid_only
            )
        except RowsRejected as e:
            _print_reports(e.reports)
            raise
        _print_reports(reports, sent=True)
        total = 0
        for f in inputs:
            with contextlib.suppress(OSError):
                total += f.stat().st_size
        with byte_progress(total, "sealing") as progress:
            sealed = seal_files(
                cfg, creds, inputs, bundle_kind, fields, now=_now(), progress=progress
            )
    return cfg, creds, sealed


def _upload_and_report(
    cfg: ClientConfig,
    creds: Credentials,
    sealed: SealedBundle,
    wait: bool,
    timeout: float,
    retries: int | None,
    json_out: bool,
) -> None:
    """Upload a sealed bundle, then report it (or wait for and report the node's verdict)."""
    with byte_progress(sealed.record.size, "uploading") as advance:
        state = {"done": 0}

        def moved(done: int, _total: int) -> None:
            if advance is not None:
                advance(done - state["done"])
            state["done"] = done

        upload_bundle(cfg, sealed, retries=retries, progress=moved, on_retry=_say_retry(json_out))
    rec = sealed.record
    if not wait:
        rec = read_state(cfg.state_path).pushed[rec.bundle_id]
        if json_out:
            emit_json(_push_json(rec, sealed.path))
        else:
            console.print(
                f"uploaded bundle {rec.bundle_id} ({rec.kind}, {rec.members} file(s), {rec.size} bytes)",
                markup=False,
            )
        return
    rec, _ = wait_for_receipt(
        cfg, creds, rec.bundle_id, cfg.dir / "received", timeout=timeout, retries=retries
    )
    _report_verdict(rec, sealed.path, json_out)


@app.command()
@fail_on_error
def push(
    directory: DirOpt,
    kind: KindOpt,
    files: Annotated[list[Path], typer.Argument(help="Files to seal into one bundle.")],
    field: FieldOpt = None,
    fields_json: FieldsJsonOpt = None,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 120.0,
    retries: RetriesOpt = None,
    encoding: EncodingOpt = None,
    valid_only: ValidOnlyOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Seal files for the node, upload the bundle into /inbox, optionally wait for the receipt.

    For `query` and `data`, tables (.csv .xlsx .parquet) are validated first (columns 身份证号 /
    id_number and, for queries, 姓名 / name; GB 11643 ID numbers) and sealed as UTF-8 CSV.
    Invalid rows are listed by line with masked ID numbers and nothing is sent (exit 3,
    E_ROWS) unless `--valid-only` is given.

    Checks your own certificate first (an expired or revoked one stops here, nothing is
    uploaded). The bundle is kept as `DIR/sent/<BUNDLE_ID>.bundle`. Transient network failures
    are retried with backoff. With `--wait`: exit 0 when the node accepted the bundle, 1 when
    it rejected it (the reason code is printed), 5 on network trouble or timeout.

    **Examples**

        exchange-client push --dir ~/rs --kind data --field resource=RS-SI-01 --wait rs-2026-11.csv

        exchange-client push --dir ~/mz --kind query --fields-json application.json --wait persons.csv

        exchange-client push --dir ~/rs --kind data --field resource=RS-SI-01 --field mode=increment --json --wait rs-12.csv

        exchange-client push --dir ~/mz --kind query --fields-json application.json --encoding gbk --valid-only persons.csv
    """
    cfg, creds, sealed = _validate_and_seal(
        directory, kind, files, field, fields_json, encoding, valid_only
    )
    _upload_and_report(cfg, creds, sealed, wait, timeout, retries, json_out)


@app.command()
@fail_on_error
def respond(
    directory: DirOpt,
    query: Annotated[
        str, typer.Option("--to-query", help="Bundle id of the relayed query you answer.")
    ],
    files: Annotated[list[Path], typer.Argument(help="Files with your answer.")],
    field: FieldOpt = None,
    fields_json: FieldsJsonOpt = None,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 120.0,
    retries: RetriesOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Answer a query the node relayed to your department (a data-source department's reply).

    The query must have been pulled into this directory (`pull`); the answer is sealed as a
    `response` bundle whose manifest names the query (`in_reply_to`), uploaded, and with
    `--wait` its receipt is awaited as for `push` (exit 0 accepted, 1 rejected, 5 network).

    **Examples**

        exchange-client pull --dir ~/rs

        exchange-client respond --dir ~/rs --to-query 3f2c8a6e-5d1b-4c1e-9a57-0c2d5e7f9b10 --wait answer.csv
    """
    cfg = load_config(directory)
    pulled = read_state(cfg.state_path).pulled.values()
    if not any(p.bundle_id == query and p.kind in ("relay", "query") for p in pulled):
        raise InputError(
            f"no relayed query {query} was pulled into {cfg.dir}: run `exchange-client pull` "
            "first, and answer only queries the node relayed to you",
            code="E_NOT_FOUND",
        )
    cfg, creds, sealed = _validate_and_seal(
        directory,
        "response",
        files,
        field,
        fields_json,
        None,
        False,
        extra_fields={"in_reply_to": query},
    )
    _upload_and_report(cfg, creds, sealed, wait, timeout, retries, json_out)


@app.command("export")
@fail_on_error
def export_cmd(
    directory: DirOpt,
    kind: KindOpt,
    to: Annotated[Path, typer.Option("--to", help="Folder on the removable medium.")],
    files: Annotated[list[Path], typer.Argument(help="Files to seal into one bundle.")],
    field: FieldOpt = None,
    fields_json: FieldsJsonOpt = None,
    encoding: EncodingOpt = None,
    valid_only: ValidOnlyOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Seal files for the node onto removable media instead of uploading (办法 第十七条).

    Exactly what `push` seals (same validation and certificate checks), written to
    `FOLDER/<BUNDLE_ID>.bundle` atomically. The node's operator copies it into the node's drop
    folder; the receipt comes back through `import` (or `pull`, once connected).

    **Examples**

        exchange-client export --dir ~/mz --kind query --to /media/usb/exchange persons.csv

        exchange-client export --dir ~/rs --kind data --field resource=RS-SI-01 --to /media/usb rs.csv
    """
    if not to.is_dir():  # before sealing: a failed export must not leave a sealed bundle
        raise InputError(f"export folder {to} does not exist", code="E_NOT_FOUND")
    cfg, _, sealed = _validate_and_seal(
        directory, kind, files, field, fields_json, encoding, valid_only
    )
    target = export_bundle(cfg, sealed, to)
    rec = read_state(cfg.state_path).pushed[sealed.record.bundle_id]
    if json_out:
        emit_json({**_push_json(rec, sealed.path), "exported_to": str(target)})
    else:
        console.print(
            f"sealed bundle {rec.bundle_id} ({rec.kind}) written to {target}", markup=False
        )


@app.command("import")
@fail_on_error
def import_cmd(
    directory: DirOpt,
    source: Annotated[Path, typer.Option("--from", help="Folder on the removable medium.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Where opened bundles go (default DIR/received).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Read receipts and results brought on removable media, with the checks `pull` applies.

    Only bundles signed by the pinned node (chain and CRL checked) are opened; anything else is
    kept in `DIR/rejected/` with the reason. The medium is only read. Files already imported or
    pulled are skipped. Exit code 1 when a file was rejected.

    **Examples**

        exchange-client import --dir ~/mz --from /media/usb/exchange

        exchange-client import --dir ~/mz --from /media/usb/exchange --out /data/incoming --json
    """
    cfg = load_config(directory)
    creds = load_credentials(cfg)
    out_dir = (out or cfg.dir / "received").absolute()
    outcomes, skipped = import_folder(cfg, creds, source, out_dir, now=_now())
    if json_out:
        emit_json({"imported": [o.to_json() for o in outcomes], "skipped_names": len(skipped)})
    else:
        for o in outcomes:
            console.print(_outcome_line(o), markup=False)
        if skipped:
            err_console.print(
                f"warning: {len(skipped)} file name(s) refused as unsafe", markup=False
            )
        if not outcomes:
            console.print("nothing new in the folder", markup=False)
    if any(o.status == "rejected" for o in outcomes):
        raise typer.Exit(1)


@app.command("wait")
@fail_on_error
def wait_cmd(
    directory: DirOpt,
    bundle_id: Annotated[str, typer.Argument(help="The id of a bundle pushed from DIR.")],
    timeout: TimeoutOpt = 120.0,
    retries: RetriesOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Wait for the node's receipt for a bundle pushed earlier (after `push` without `--wait`).

    Exit 0 accepted, 1 rejected (the reason code is printed), 5 network trouble or timeout.

    **Examples**

        exchange-client wait --dir ~/mz 3f2c8a6e-5d1b-4c1e-9a57-0c2d5e7f9b10 --timeout 600
    """
    cfg = load_config(directory)
    if bundle_id not in read_state(cfg.state_path).pushed:
        raise InputError(f"no bundle {bundle_id} was pushed from {cfg.dir}", code="E_NOT_FOUND")
    creds = load_credentials(cfg)
    rec, _ = wait_for_receipt(
        cfg, creds, bundle_id, cfg.dir / "received", timeout=timeout, retries=retries
    )
    _report_verdict(rec, cfg.dir / "sent" / f"{bundle_id}.bundle", json_out)


def _report_verdict(rec: Any, path: Path, json_out: bool) -> None:
    if json_out:
        emit_json(_push_json(rec, path))
    elif rec.verdict == "accepted":
        console.print(
            f"bundle {rec.bundle_id} accepted by the node (signed receipt verified)", markup=False
        )
    else:
        console.print(
            f"bundle {rec.bundle_id} REJECTED by the node: {rec.reason_code}", markup=False
        )
        entry = lookup(rec.reason_code)
        if entry is not None:
            console.print(f"  {entry.peer_text}\nhint: {entry.operator_hint}", markup=False)
    if rec.verdict != "accepted":
        raise typer.Exit(1)


def _outcome_line(o: PullOutcome) -> str:
    if o.status == "rejected":
        return f"{o.name}: REJECTED, not opened ({o.reason_code}); kept in rejected/"
    if o.status == "duplicate":
        return f"{o.name}: same content as a file pulled before; skipped"
    if o.kind == "receipt":
        extra = f" ({o.reason_code})" if o.reason_code else ""
        return f"{o.name}: receipt for {o.receipt_for}: {o.verdict}{extra}"
    return f"{o.name}: {o.kind} {o.bundle_id} opened into {o.opened_to}"


@app.command("pull")
@fail_on_error
def pull_cmd(
    directory: DirOpt,
    out: Annotated[
        Path | None, typer.Option("--out", help="Where opened bundles go (default DIR/received).")
    ] = None,
    retries: RetriesOpt = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="Convert CSV members of opened bundles: csv (UTF-8 with BOM, for Excel), csv-gb18030, xlsx or parquet.",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Download every new file from /outbox, verify it, open it into OUT/<kind>/<BUNDLE_ID>/.

    Only bundles signed by the pinned node certificate (chain and CRL checked) are opened;
    anything else is kept in `DIR/rejected/` with the reason and reported. Receipts record the
    verdict of the bundle they answer. Nothing is downloaded or processed twice. Exit code 1
    when a file was rejected.

    **Examples**

        exchange-client pull --dir ~/mz

        exchange-client pull --dir ~/mz --out /data/incoming --json

        exchange-client pull --dir ~/mz --format xlsx
    """
    if fmt is not None and fmt not in OUTPUT_FORMATS:
        raise InputError(
            f"unknown --format {fmt!r}: choose one of {', '.join(OUTPUT_FORMATS)}", code="E_USAGE"
        )
    cfg = load_config(directory)
    creds = load_credentials(cfg)
    out_dir = (out or cfg.dir / "received").absolute()
    outcomes, skipped = pull(cfg, creds, out_dir, retries=retries, on_retry=_say_retry(json_out))
    if fmt is not None:
        for problem in convert_opened(outcomes, fmt):
            err_console.print(f"warning: {problem}", markup=False)
    if json_out:
        emit_json({"pulled": [o.to_json() for o in outcomes], "skipped_names": len(skipped)})
    else:
        for o in outcomes:
            console.print(_outcome_line(o), markup=False)
        if skipped:
            err_console.print(
                f"warning: {len(skipped)} outbox name(s) refused as unsafe", markup=False
            )
        if not outcomes:
            console.print("nothing new in the outbox", markup=False)
    if any(o.status == "rejected" for o in outcomes):
        raise typer.Exit(1)


@app.command()
@fail_on_error
def status(directory: DirOpt, json_out: JsonOpt = False) -> None:
    """Show the bundles pushed (with the node's verdict) and the files pulled.

    Shows ids, kinds, times, counts, sizes and reason codes only: never member file names.

    **Examples**

        exchange-client status --dir ~/mz

        exchange-client status --dir ~/mz --json
    """
    cfg = load_config(directory)
    state = read_state(cfg.state_path)
    pushed = sorted(state.pushed.values(), key=lambda r: r.created_at)
    pulled = sorted(state.pulled.values(), key=lambda p: p.pulled_at)
    if json_out:
        emit_json(
            {
                "dept": cfg.dept,
                "node": f"{cfg.node_host}:{cfg.node_port}",
                "pushed": [
                    {
                        "bundle_id": r.bundle_id,
                        "kind": r.kind,
                        "created_at": r.created_at,
                        "uploaded_at": r.uploaded_at,
                        "members": r.members,
                        "size": r.size,
                        "verdict": r.verdict,
                        "reason_code": r.reason_code,
                    }
                    for r in pushed
                ],
                "pulled": [
                    {
                        "name": p.name,
                        "kind": p.kind,
                        "bundle_id": p.bundle_id,
                        "pulled_at": p.pulled_at,
                        "size": p.size,
                        "status": p.status,
                        "reason_code": p.reason_code,
                        "receipt_for": p.receipt_for,
                        "verdict": p.verdict,
                    }
                    for p in pulled
                ],
            }
        )
        return
    t = Table(title=f"pushed by {cfg.dept}")
    for col in ("bundle id", "kind", "created", "files", "bytes", "receipt"):
        t.add_column(col)
    for r in pushed:
        verdict = r.verdict if r.uploaded_at or r.verdict != "waiting" else "not uploaded"
        if r.reason_code:
            verdict += f" ({r.reason_code})"
        t.add_row(r.bundle_id, r.kind, r.created_at, str(r.members), str(r.size), verdict)
    console.print(t)
    t2 = Table(title="pulled from the node")
    for col in ("name", "kind", "pulled", "bytes", "status"):
        t2.add_column(col)
    for p in pulled:
        st = p.status + (f" ({p.reason_code})" if p.reason_code else "")
        t2.add_row(p.name, p.kind or "-", p.pulled_at, str(p.size), st)
    console.print(t2)


@app.command("verify")
@fail_on_error
def verify_cmd(
    directory: DirOpt,
    bundle: Annotated[Path, typer.Argument(help="The bundle file to check.")],
    json_out: JsonOpt = False,
) -> None:
    """Check a bundle offline: signature, sender chain and CRL, times (no private key needed).

    Says whether the signer is the pinned node. Exit code 1 when the bundle is refused.

    **Examples**

        exchange-client verify --dir ~/mz ~/mz/pulled/receipt-….bundle
    """
    cfg = load_config(directory)
    vb = verify(bundle, trust_store(cfg), now=_now())
    data = {
        "valid": True,
        "bundle_id": str(vb.bundle_id),
        "kind": vb.header.kind.value,
        "sender": vb.sender.code,
        "sender_is_pinned_node": vb.sender.fingerprint == cfg.node_fingerprint,
        "created_at": vb.header.created_at.isoformat(),
        "expires_at": vb.header.expires_at.isoformat(),
        "sha256": vb.sha256,
    }
    if json_out:
        emit_json(data)
    else:
        node = " (the pinned node)" if data["sender_is_pinned_node"] else ""
        console.print(
            f"valid {data['kind']} bundle {data['bundle_id']} from {vb.sender.code}{node}",
            markup=False,
        )


@app.command("open")
@fail_on_error
def open_cmd(
    directory: DirOpt,
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the members (must not hold them).")
    ],
    bundle: Annotated[Path, typer.Argument(help="The bundle file to open.")],
    json_out: JsonOpt = False,
) -> None:
    """Verify and decrypt a bundle addressed to this department into OUT (offline).

    **Examples**

        exchange-client open --dir ~/mz --out /tmp/result ~/mz/pulled/result-….bundle
    """
    cfg = load_config(directory)
    if cfg.cert is None:
        raise InputError("no department certificate yet (init --import-cert)", code="E_NO_CERT")
    ob = open_bundle(
        bundle,
        out,
        recipient_key=load_private_key(cfg.key),
        recipient_cert=load_certificates(cfg.cert)[0],
        trust=trust_store(cfg),
        now=_now(),
    )
    size = sum(m.size for m in ob.manifest.members)
    if json_out:
        emit_json(
            {
                "bundle_id": str(ob.header.bundle_id),
                "kind": ob.header.kind.value,
                "sender": ob.sender.code,
                "members": len(ob.paths),
                "bytes": size,
                "out": str(out),
            }
        )
    else:
        console.print(
            f"opened {ob.header.kind.value} bundle {ob.header.bundle_id} from {ob.sender.code}: {len(ob.paths)} file(s), {size} bytes into {out}",
            markup=False,
        )


@app.command()
def version() -> None:
    """Print the client version."""
    from importlib.metadata import version as dist_version

    typer.echo(dist_version("social-assistance-exchange"))


def main() -> None:
    """Console-script entry point."""
    app()
