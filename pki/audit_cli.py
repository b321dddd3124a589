"""``exchange-pki audit verify``: an inspector checks a node's audit extract offline.

A thin adapter around :func:`pki.audit_extract.verify_extract`: it reads the extract and the
trust files and prints what holds. No node, no database, no network.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from exchange_common.cli import EXIT_CODES_HELP, console, emit_json, fail_on_error, parse_time
from exchange_common.errors import InputError, PeerError
from pki.audit_extract import verify_extract
from pki.bundle_cli import AtOpt, CrlOpt, JsonOpt, TrustOpt, _trust

__all__ = ["audit_app"]

#: An extract larger than this is refused before it is parsed.
MAX_EXTRACT_BYTES = 1 << 30

audit_app = typer.Typer(
    name="audit",
    help=(
        "Check a node's audit extract offline (exchange-server audit export): Merkle proofs, "
        f"the signed checkpoint and the node certificate.\n\n{EXIT_CODES_HELP}"
    ),
    no_args_is_help=True,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _read(path: Path, what: str) -> str:
    try:
        if path.stat().st_size > MAX_EXTRACT_BYTES:
            raise PeerError(f"{what} {path} is larger than 1 GiB", code="E_TOO_LARGE")
        return path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read {what} {path}: {e}", code="E_NOT_FOUND") from None


@audit_app.command("verify")
@fail_on_error
def verify_cmd(
    extract: Annotated[Path, typer.Argument(help="The extract (JSON) the node exported.")],
    trust: TrustOpt,
    crl: CrlOpt = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint",
            help="An earlier checkpoint note you kept: also prove the trail only grew since "
            "(the extract must carry a consistency proof from it).",
        ),
    ] = None,
    at: AtOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Check an audit extract: the node certificate's chain to `--trust` (and the CRL), the
    checkpoint's signature by that certificate, every event's inclusion proof and every
    person proof. Exit 0 when all hold; 1 naming the first event or part that does not
    (E_EXTRACT, E_CHECKPOINT, or the certificate's code).

    **Examples**

        exchange-pki audit verify mz.json --trust ministry-root.pem --crl crl.pem

        exchange-pki audit verify mz.json --trust ministry-root.pem --checkpoint last-month.txt --json
    """
    now = parse_time(at)
    store = _trust(trust, crl)
    try:
        doc: Any = json.loads(_read(extract, "extract"))
    except ValueError:
        raise PeerError(f"{extract} is not JSON", code="E_EXTRACT") from None
    if not isinstance(doc, dict):
        raise PeerError(f"{extract} is not an audit extract", code="E_EXTRACT")
    older = _read(checkpoint, "checkpoint") if checkpoint is not None else None
    report = verify_extract(doc, store, now=now, older=older)
    out = {
        "verified": True,
        "events": report.events,
        "persons": report.persons,
        "checkpoint": {
            "origin": report.checkpoint.origin,
            "size": report.checkpoint.size,
            "root": report.checkpoint.root.hex(),
        },
        "signer": report.signer,
        "consistent_from": report.consistent_from,
    }
    if json_out:
        emit_json(out)
        return
    grown = (
        f"; the trail only grew since your checkpoint of {report.consistent_from} events"
        if report.consistent_from is not None
        else ""
    )
    console.print(
        f"extract verified: {report.events} events are in {report.checkpoint.origin} as "
        f"checkpointed at {report.checkpoint.size} events, signed by {report.signer}{grown}",
        highlight=False,
        markup=False,
    )
