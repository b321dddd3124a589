"""The department's ``sent/`` folder under a policy (issue "The administrator's node").

Every bundle a department seals is kept as ``DIR/sent/<BUNDLE_ID>.bundle``: its own copy of
what it sent, and what ``push`` retries and ``export`` writes from. It holds the department's
personal data (sealed), so it must not grow for ever. :func:`prune_sent` removes a bundle once
the node's receipt has answered it (accepted or rejected) and it is older than
``[retention] sent_days`` (client.toml; 0 keeps everything). A bundle still waiting for its
receipt, or never uploaded nor exported, is always kept: it may still have to be sent.
``pull`` applies the policy after each run; ``exchange-client prune`` applies or previews it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass

from exchange_client.config import ClientConfig
from exchange_client.state import WAITING, read_state

__all__ = ["Pruned", "prune_sent"]


@dataclass(frozen=True)
class Pruned:
    """A bundle removed from ``sent/`` (or that would be, in a dry run)."""

    bundle_id: str
    kind: str
    verdict: str
    created_at: str
    size: int


def prune_sent(cfg: ClientConfig, now: dt.datetime, *, dry_run: bool = False) -> list[Pruned]:
    """Remove from ``DIR/sent`` the bundles the policy lets go (see the module docstring);
    return them, oldest first. With ``dry_run`` nothing is removed. A file already gone is
    skipped; the state's record of the bundle is kept (``status`` still lists it)."""
    if cfg.sent_days <= 0:
        return []
    folder = cfg.dir / "sent"
    if not folder.is_dir():
        return []
    cutoff = now - dt.timedelta(days=cfg.sent_days)
    out: list[Pruned] = []
    for rec in sorted(read_state(cfg.state_path).pushed.values(), key=lambda r: r.created_at):
        if rec.verdict == WAITING:
            continue  # waiting for its receipt, or never sent: it may still have to go
        try:
            created = dt.datetime.fromisoformat(rec.created_at)
        except ValueError:
            continue
        if created.tzinfo is None:
            created = created.replace(tzinfo=dt.UTC)
        path = folder / f"{rec.bundle_id}.bundle"
        if created >= cutoff or not path.is_file():
            continue
        out.append(Pruned(rec.bundle_id, rec.kind, rec.verdict, rec.created_at, rec.size))
        if not dry_run:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    return out
