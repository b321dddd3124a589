"""``exchange-client wait`` and ``pull``: receipts, results and relays from the node."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from exchange_client.cli_shared import (
    DirOpt,
    JsonOpt,
    RetriesOpt,
    TimeoutOpt,
    _report_verdict,
    _say_retry,
    report_pulled,
)
from exchange_client.config import load_config
from exchange_client.credentials import load_credentials
from exchange_client.ids import resolve_id
from exchange_client.pull import convert_opened, pull
from exchange_client.push import (
    wait_for_receipt,
)
from exchange_client.sent import prune_sent
from exchange_client.state import read_state
from exchange_client.tables import OUTPUT_FORMATS
from exchange_common.cli import (
    err_console,
    fail_on_error,
)
from exchange_common.errors import InputError


@fail_on_error
def wait_cmd(
    directory: DirOpt,
    bundle_id: Annotated[
        str,
        typer.Argument(help="The id of a bundle pushed from DIR, or its first characters."),
    ],
    timeout: TimeoutOpt = 120.0,
    retries: RetriesOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Wait for the node's receipt for a bundle pushed earlier (after `push` without `--wait`).

    Shows what the receipt says, as `push --wait` does: the verdict, the reason code with its
    text and the node's explanation, for a data push the rows stored and rejected by reason.
    Exit 0 accepted, 7 accepted but some rows rejected, 1 rejected, 5 network trouble or
    timeout. A bundle that never reached the node (its upload failed or was interrupted) is
    refused after one pull (exit 3, E_NOT_UPLOADED): `exchange-client resend BUNDLE_ID` sends it.
    The first characters of the id are enough when no other bundle pushed from DIR begins
    with them (several: exit 2, the candidates are listed).

    **Examples**

        exchange-client wait --dir ~/mz 3f2c8a6e-5d1b-4c1e-9a57-0c2d5e7f9b10 --timeout 600

        exchange-client wait --dir ~/mz 3f2c8a6e
    """
    cfg = load_config(directory)
    pushed = read_state(cfg.state_path).pushed
    found = resolve_id(bundle_id, pushed, what=f"bundles pushed from {cfg.dir}", param="BUNDLE_ID")
    if found is None:
        raise InputError(f"no bundle {bundle_id} was pushed from {cfg.dir}", code="E_NOT_FOUND")
    bundle_id = found
    creds = load_credentials(cfg)
    wait_for_receipt(cfg, creds, bundle_id, cfg.dir / "received", timeout=timeout, retries=retries)
    _report_verdict(
        read_state(cfg.state_path), bundle_id, cfg.dir / "sent" / f"{bundle_id}.bundle", json_out
    )


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
    """Download every new file from /outbox, verify it, open it into `OUT/<kind>/<BUNDLE_ID>/`.

    Only bundles signed by the pinned node certificate (chain and CRL checked) are opened;
    anything else is kept in `DIR/rejected/` with the reason and reported. Receipts record the
    verdict of the bundle they answer. Nothing is downloaded or processed twice. Then says what
    is still outstanding: receipts not pulled yet, queries with resources pending, overdue (the
    due date passed) or missing, relays you have not answered. Exit code 1 when a file was
    rejected, 8 when a final result segment left a query not fully answered. Afterwards,
    sealed bundles the node answered more than `[retention] sent_days` ago leave `DIR/sent/`.

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
    pruned = prune_sent(cfg, dt.datetime.now(dt.UTC))  # the sent/ policy, after each pull
    if pruned and not json_out:
        err_console.print(
            f"note: {len(pruned)} answered bundle(s) older than {cfg.sent_days} days removed "
            "from sent/ ([retention] sent_days in client.toml)",
            markup=False,
        )
    report_pulled(
        read_state(cfg.state_path), outcomes, skipped, json_out, key="pulled", where="the outbox"
    )
