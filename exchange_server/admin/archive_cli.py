"""``exchange-server archive``: the evidence of one bundle the node handled, gathered for an
inspector (部省 第九条: the basis of a query retrievable within 5 working days). See
:mod:`exchange_server.admin.archive` for what the folder holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from exchange_common.cli import console, emit_json, fail_on_error
from exchange_server.admin.archive import gather, resolve
from exchange_server.admin.cli_shared import HomeOpt, JsonOpt, _node, command_group
from exchange_server.node import utcnow

__all__ = ["archive_app"]

archive_app = command_group(
    "archive",
    "The evidence of a bundle the node handled: its stored bundles, the receipts and results "
    "sent for it, and its audit events, with SHA-256 digests.",
)


@archive_app.command("get")
@fail_on_error
def get(
    home: HomeOpt,
    bundle: Annotated[
        str,
        typer.Argument(
            help="A bundle, upload or query id (or a unique start of one, 8 characters at "
            "least), or the id of a receipt or result the node sent.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Folder to create (must not exist or be empty; default ./archive-<ID>).",
            show_default=False,
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Gather the evidence of a bundle: the signed bundle file(s) as stored, the receipts,
    results, relays and notices sent for it, and every audit event that names it or its
    upload, into a new owner-only folder with `manifest.json` (each file's SHA-256). For a
    query, its relays, the providers' answers and the supplements come with it. What the
    retention already purged is listed under `missing`. Unknown id: `E_NOT_FOUND`.

    **Examples**

        exchange-server archive get --home /srv/node 3f2c8a6e-5d1b-4c1e-9a57-0c2d5e7f9b10

        exchange-server archive get --home /srv/node 3f2c8a6e --out /media/inspector/q-3f2c8a6e --json

        sha256sum /media/inspector/q-3f2c8a6e/store/*.bundle   # the same digests as manifest.json
    """
    node = _node(home)
    requested, case, named = resolve(node, bundle)
    target = out if out is not None else Path(f"archive-{requested}")
    manifest = gather(node, requested, case, named, target, utcnow())
    if json_out:
        emit_json({"dir": str(target), **manifest})
        return
    console.print(
        f"archive of {requested} in {target}: {len(manifest['files'])} file(s), "
        f"{manifest['events']['count']} audit event(s)",
        markup=False,
    )
    for entry in manifest["files"]:
        kind = entry["kind"] or "-"
        console.print(f"  {entry['sha256'][:16]}  {kind:<9} {entry['file']}", markup=False)
    for gone in manifest["missing"]:
        console.print(f"  missing: {gone['what']} ({gone['why']})", markup=False)
