"""``exchange-client export`` and ``import``: move sealed bundles on removable media (offline)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from exchange_client.cli_shared import (
    DirOpt,
    EncodingOpt,
    FieldOpt,
    FieldsJsonOpt,
    JsonOpt,
    KindOpt,
    ValidOnlyOpt,
    _now,
    _push_json,
    report_pulled,
)
from exchange_client.config import load_config
from exchange_client.credentials import load_credentials
from exchange_client.offline import export_bundle, import_folder
from exchange_client.push_cli import _validate_and_seal
from exchange_client.state import read_state
from exchange_common.cli import (
    console,
    emit_json,
    fail_on_error,
)
from exchange_common.errors import InputError


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
    pulled are skipped, and so are your own bundles written there by `export` (they are for the
    node's drop folder): each is named as ignored. Then says what is still outstanding, as
    `pull` does. Exit code 1 when a file was rejected, 8 when a final result segment left a
    query not fully answered.

    **Examples**

        exchange-client import --dir ~/mz --from /media/usb/exchange

        exchange-client import --dir ~/mz --from /media/usb/exchange --out /data/incoming --json
    """
    cfg = load_config(directory)
    creds = load_credentials(cfg)
    out_dir = (out or cfg.dir / "received").absolute()
    outcomes, skipped = import_folder(cfg, creds, source, out_dir, now=_now())
    report_pulled(
        read_state(cfg.state_path), outcomes, skipped, json_out, key="imported", where="the folder"
    )
