"""``exchange-client prune``: apply (or preview) the ``sent/`` policy (:mod:`exchange_client.sent`)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer

from exchange_client.cli_shared import DirOpt, JsonOpt
from exchange_client.config import load_config
from exchange_client.sent import prune_sent
from exchange_common.cli import console, emit_json, fail_on_error

__all__ = ["prune"]


@fail_on_error
def prune(
    directory: DirOpt,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list what would be removed.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Remove from `DIR/sent/` the sealed bundles the node answered (accepted or rejected)
    more than `[retention] sent_days` ago (client.toml; default 90, 0 keeps everything).
    A bundle still waiting for its receipt, or never sent, is always kept. `pull` does this
    after each run; the state keeps every bundle's record (`status` still lists it).

    **Examples**

        exchange-client prune --dir ~/mz --dry-run

        exchange-client prune --dir ~/mz --json
    """
    cfg = load_config(directory)
    pruned = prune_sent(cfg, dt.datetime.now(dt.UTC), dry_run=dry_run)
    if json_out:
        emit_json(
            {
                "dry_run": dry_run,
                "sent_days": cfg.sent_days,
                "removed": [
                    {
                        "bundle_id": p.bundle_id,
                        "kind": p.kind,
                        "verdict": p.verdict,
                        "created_at": p.created_at,
                        "size": p.size,
                    }
                    for p in pruned
                ],
            }
        )
        return
    verb = "would remove" if dry_run else "removed"
    if not pruned:
        console.print(
            f"nothing to remove from sent/ (keeps answered bundles {cfg.sent_days} days)"
            if cfg.sent_days
            else "sent/ is kept for ever ([retention] sent_days = 0)",
            markup=False,
        )
    for p in pruned:
        console.print(
            f"{verb} {p.bundle_id} ({p.kind}, {p.verdict}, sealed {p.created_at}, {p.size} bytes)",
            markup=False,
        )
