"""``exchange-client push``, ``respond`` and ``resend``: validate tables, seal, upload (or upload
a kept bundle again) and optionally wait.

Invalid rows are reported on stderr by line, reason code and masked ID number only (never
names); nothing is uploaded when a table has invalid rows unless ``--valid-only``.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from exchange_client.cli_shared import (
    DirOpt,
    EncodingOpt,
    FieldOpt,
    FieldsJsonOpt,
    JsonOpt,
    KindOpt,
    RetriesOpt,
    TimeoutOpt,
    ValidOnlyOpt,
    WaitOpt,
    _now,
    _push_json,
    _report_verdict,
    _say_retry,
)
from exchange_client.config import ClientConfig, load_config
from exchange_client.credentials import Credentials, load_credentials
from exchange_client.ids import resolve_id
from exchange_client.push import (
    PUSH_KINDS,
    RowsRejected,
    SealedBundle,
    kept_bundle,
    parse_fields,
    prepare_inputs,
    push_resource,
    seal_files,
    upload_bundle,
    wait_for_receipt,
)
from exchange_client.state import read_state
from exchange_client.tables import ValidationReport
from exchange_common.cli import (
    byte_progress,
    console,
    emit_json,
    err_console,
    fail_on_error,
)
from exchange_common.errors import InputError
from pki.bundle import BundleKind

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


def _validate_and_seal(
    directory: Path,
    kind: str,
    files: list[Path],
    field: list[str] | None,
    fields_json: Path | None,
    encoding: str | None,
    valid_only: bool,
    extra_fields: dict[str, Any] | None = None,
    allow_unauthorized: bool = False,
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
                files,
                bundle_kind,
                Path(work),
                encoding=encoding,
                valid_only=valid_only,
                resource=push_resource(cfg.dir, bundle_kind, fields),
                allow_unauthorized=allow_unauthorized,
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
    creds: Credentials | None,
    sealed: SealedBundle,
    wait: bool,
    timeout: float,
    retries: int | None,
    json_out: bool,
) -> None:
    """Upload a sealed bundle, then report it (or wait for and report the node's verdict).

    ``creds`` are loaded here when waiting needs them and none were given. Ctrl-C during the
    upload says how to send the kept bundle, then re-raises the :class:`KeyboardInterrupt`.
    """
    rec = sealed.record
    with byte_progress(rec.size, "uploading") as advance:
        state = {"done": 0}

        def moved(done: int, _total: int) -> None:
            if advance is not None:
                advance(done - state["done"])
            state["done"] = done

        try:
            upload_bundle(
                cfg, sealed, retries=retries, progress=moved, on_retry=_say_retry(json_out)
            )
        except KeyboardInterrupt:
            err_console.print(
                f"note: upload of bundle {rec.bundle_id} interrupted; the node discards what it "
                f"received; `exchange-client resend {rec.bundle_id}` uploads the kept bundle",
                markup=False,
            )
            raise
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
    wait_for_receipt(
        cfg,
        creds if creds is not None else load_credentials(cfg),
        rec.bundle_id,
        cfg.dir / "received",
        timeout=timeout,
        retries=retries,
    )
    _report_verdict(read_state(cfg.state_path), rec.bundle_id, sealed.path, json_out)


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
    allow_unauthorized: Annotated[
        bool,
        typer.Option(
            "--allow-unauthorized",
            help="Send a query whose persons lack authorization references: the node suspends "
            "it until a supplement brings them (浙江 六(二)).",
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Seal files for the node, upload the bundle into /inbox, optionally wait for the receipt.

    For `query` and `data`, tables (.csv .xlsx .parquet) are validated first (columns 身份证号 /
    id_number and, for queries, 姓名 / name; GB 11643 ID numbers) and sealed as UTF-8 CSV.
    Invalid rows are listed by line with masked ID numbers and nothing is sent (exit 3,
    E_ROWS) unless `--valid-only` is given.

    Checks your own certificate first (an expired or revoked one stops here, nothing is
    uploaded). The bundle is kept as `DIR/sent/<BUNDLE_ID>.bundle`. Transient network failures
    are retried with backoff. With `--wait` the receipt is shown: the verdict, the reason code
    with its text and the node's explanation, and for a data push the rows stored and rejected
    by reason (ID numbers masked). Exit 0 accepted, 7 accepted but some rows rejected, 1
    rejected, 5 network trouble or timeout.

    **Examples**

        exchange-client push --dir ~/rs --kind data --field resource=RS-SI-01 --wait rs-2026-11.csv

        exchange-client push --dir ~/mz --kind query --fields-json application.json --wait persons.csv

        exchange-client push --dir ~/rs --kind data --field resource=RS-SI-01 --field mode=increment --json --wait rs-12.csv

        exchange-client push --dir ~/mz --kind query --fields-json application.json --encoding gbk --valid-only persons.csv

        exchange-client push --dir ~/mz --kind supplement --field in_reply_to=QUERY_ID --wait missing-authorizations.csv

    A query whose persons lack authorization references is refused here (E_AUTHORIZATION rows)
    unless `--allow-unauthorized`: then the node accepts it suspended, and a `supplement` (a
    persons table with the missing references, `--field in_reply_to=QUERY_ID`) resumes it.
    """
    cfg, creds, sealed = _validate_and_seal(
        directory,
        kind,
        files,
        field,
        fields_json,
        encoding,
        valid_only,
        allow_unauthorized=allow_unauthorized,
    )
    _upload_and_report(cfg, creds, sealed, wait, timeout, retries, json_out)


@fail_on_error
def respond(
    directory: DirOpt,
    query: Annotated[
        str,
        typer.Option(
            "--to-query",
            help="Bundle id of the relayed query you answer (or its first characters).",
        ),
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

    The relay must have been pulled into this directory (`pull` lists it as kind `relay`, with
    the resource, the items asked and the deadline). The answer is one table: the resource's key
    column (e.g. 公民身份号码) and some of the items asked, one row per record; a person without
    a record has no row. With `DIR/catalog.toml` it is checked like a data push before sealing;
    it is sealed as Parquet (every column text, the cells as given), which the node merges
    without parsing CSV.
    The node refuses an answer that names a person or an item the relay did not ask for
    (E_NOT_ASKED) or holds invalid values (E_ANSWER_VALUES); the relay then stays open for a
    corrected answer. With `--wait` the receipt is awaited and shown as for `push` (exit 0
    accepted, 1 rejected, 5 network).

    **Examples**

        exchange-client pull --dir ~/rs

        exchange-client respond --dir ~/rs --to-query 3f2c8a6e-5d1b-4c1e-9a57-0c2d5e7f9b10 --wait answer.csv
    """
    cfg = load_config(directory)
    relays = {
        p.bundle_id: p
        for p in read_state(cfg.state_path).pulled.values()
        if p.kind == "relay" and p.bundle_id is not None
    }
    found = resolve_id(query, relays, what=f"relays pulled into {cfg.dir}", param="--to-query")
    if found is None:
        raise InputError(
            f"no relayed query {query} was pulled into {cfg.dir}: run `exchange-client pull` "
            "first, and answer only queries the node relayed to you",
            code="E_NOT_FOUND",
        )
    query = found
    asked = relays[found].fields or {}
    extra: dict[str, Any] = {"in_reply_to": query}
    if isinstance(asked.get("resource"), str):
        extra["resource"] = asked["resource"]  # checked against DIR/catalog.toml before sealing
    cfg, creds, sealed = _validate_and_seal(
        directory,
        "response",
        files,
        field,
        fields_json,
        None,
        False,
        extra_fields=extra,
    )
    _upload_and_report(cfg, creds, sealed, wait, timeout, retries, json_out)


@fail_on_error
def resend(
    directory: DirOpt,
    bundle_id: Annotated[
        str,
        typer.Argument(help="The id of a bundle pushed from DIR, or its first characters."),
    ],
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 120.0,
    retries: RetriesOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Upload again a bundle that never reached the node (its upload failed or was interrupted).

    Sends `DIR/sent/<BUNDLE_ID>.bundle` exactly as it was sealed: nothing is sealed anew. Refused
    (exit 3) when no bundle with that id was pushed from DIR (E_NOT_FOUND), when the node's
    receipt already answered it (E_ANSWERED: accepted or rejected, nothing to resend), or when
    its file is gone or changed (E_SENT_MISSING: the `sent/` policy may have removed it; push the
    files again). A bundle uploaded before but still awaiting its receipt may be sent again: if
    the first copy arrived, the node answers this one with E_REPLAY, which never overrides the
    first copy's verdict. With `--wait` the receipt is awaited and shown as for `push` (exit 0
    accepted, 7 accepted but some rows rejected, 1 rejected, 5 network trouble or timeout).
    The first characters of the id are enough when no other bundle pushed from DIR begins
    with them (several: exit 2, the candidates are listed).

    **Examples**

        exchange-client status --dir ~/mz

        exchange-client resend --dir ~/mz 3f2c8a6e-5d1b-4c1e-9a57-0c2d5e7f9b10 --wait

        exchange-client resend --dir ~/mz 3f2c8a6e --json
    """
    cfg = load_config(directory)
    pushed = read_state(cfg.state_path).pushed
    found = resolve_id(bundle_id, pushed, what=f"bundles pushed from {cfg.dir}", param="BUNDLE_ID")
    sealed = kept_bundle(cfg, found or bundle_id.strip())
    if sealed.record.uploaded_at and not json_out:
        err_console.print(
            f"note: bundle {sealed.record.bundle_id} was uploaded before "
            f"({sealed.record.uploaded_at}); if that copy arrived, the node answers this one "
            "with E_REPLAY and keeps the first verdict",
            markup=False,
        )
    _upload_and_report(cfg, None, sealed, wait, timeout, retries, json_out)
