"""Retention: what the node keeps, for how long, and the run that purges what expired.

``[retention]`` in node.toml sets the periods (decision 0013; docs/operator-guide.md,
"Retention and evidence"):

====================  ====================================  ===================================
material              kept                                  then
====================  ====================================  ===================================
accepted bundles      ``evidence_days`` after the node       deleted
(``spool/store``)     last recorded them; anything of a
                      query from its close, and at least
                      366 days (a report is valid a year,
                      浙江 四(一)4)
what the node sent    the same, from when it was written    deleted
(outbox, ``sent/``)
a pulled outbox file  ``pulled_outbox_days`` after the      moved to ``spool/sent/<CODE>/``:
                      department read it completely         still evidence, out of the quota
rejected uploads      ``quarantine_days`` after the         deleted
(``quarantine``)      rejection
drop folder           a file that is not a sealed bundle:   deleted
                      ``drop_plaintext_minutes``; an
                      imported sealed copy (``.imported``):
                      ``quarantine_days``
====================  ====================================  ===================================

Never purged: anything open work needs (a query not closed, with its upload, relays, answers,
supplements and receipts; an upload still in the pipeline), a stored bundle the store knows
nothing about, sealed bundles waiting in the drop folder, ``incoming/``, audit events and
state-store rows (trace records are never deleted or modified, 浙江 六(三)).

:func:`decide` is the pure judgement; :func:`run_retention` scans (:mod:`.retention_scan`),
judges, records **one** audit event ``retention.purged`` naming what goes (bundle ids, outbox
names, upload ids; drop-folder files only counted, their names may name a person) and then
deletes or moves. The event is committed first: a crash in between leaves files the next run
deletes and records again, never a deletion without a record.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from exchange_common.fs import fsync_dir, private_dir
from exchange_server.config import RetentionConfig
from exchange_server.node import Node, utcnow
from exchange_server.pipeline.retention_scan import Item, Material, scan
from exchange_server.spool import unheld
from exchange_server.store.audit import EventSpec, append_events
from pki.bundle import sealed_header

__all__ = [
    "PURGE_ACTION",
    "REPORT_SCHEMA",
    "RESULT_VALIDITY_DAYS",
    "Report",
    "Verdict",
    "decide",
    "keep_retention",
    "run_retention",
]

log = logging.getLogger("exchange_server.retention")

#: The audit action of a retention run that purged or moved something.
PURGE_ACTION = "retention.purged"
#: The ``--json`` schema of a run's report.
REPORT_SCHEMA = "exchange-retention-run/1"
#: A verification report is valid at most a year (浙江 四(一)4); anything of a query is kept
#: at least this long after the query closed, whatever ``evidence_days`` says.
RESULT_VALIDITY_DAYS = 366
#: The lock file that keeps two runs (serve and cron) from working at once.
LOCK_NAME = ".retention.lock"


class Verdict(StrEnum):
    """What becomes of one file."""

    OPEN = "open"  # open work needs it
    PERIOD = "in_period"  # inside its period
    UNKNOWN = "unknown"  # the store does not know it: kept, never guessed at
    RETIRE = "retire"  # pulled long enough ago: leaves the outbox for spool/sent
    PURGE = "purge"


def _evidence_days(policy: RetentionConfig, of_query: bool) -> int:
    """Days evidence is kept (0: for ever); a query's at least a report's validity."""
    days = policy.evidence_days
    return max(days, RESULT_VALIDITY_DAYS) if days and of_query else days


def decide(item: Item, policy: RetentionConfig, now: dt.datetime) -> Verdict:
    """What becomes of ``item`` at ``now`` under ``policy``; pure (no I/O, no clock).

    Open work keeps everything. A period has passed when ``now - since`` is at least the
    period (so a file is purged at the first run after its period, never before).
    """
    if item.needed or item.waiting:
        return Verdict.OPEN
    if item.since is None:
        return Verdict.UNKNOWN
    age = now - item.since
    if item.material is Material.DROP:
        limit = (
            dt.timedelta(days=policy.quarantine_days)
            if item.sealed
            else dt.timedelta(minutes=policy.drop_plaintext_minutes)
        )
        return Verdict.PURGE if age >= limit else Verdict.PERIOD
    if item.material is Material.QUARANTINE:
        return Verdict.PURGE if age >= dt.timedelta(days=policy.quarantine_days) else Verdict.PERIOD
    days = _evidence_days(policy, item.of_query)
    if days and age >= dt.timedelta(days=days):
        return Verdict.PURGE
    if (
        item.material is Material.OUTBOX
        and item.pulled_at is not None
        and now - item.pulled_at >= dt.timedelta(days=policy.pulled_outbox_days)
    ):
        return Verdict.RETIRE
    return Verdict.PERIOD


@dataclass
class Report:
    """What one run purged (or, dry, would purge), moved and kept."""

    at: dt.datetime
    dry_run: bool
    policy: dict[str, int]
    #: Labels purged per material (stored: bundle ids; outbox, sent: ``CODE/NAME``;
    #: quarantine: its file names). Drop-folder files are only counted (:attr:`drop`).
    purged: dict[str, list[str]] = field(default_factory=dict)
    drop: int = 0
    #: Outbox files moved to ``spool/sent`` (``CODE/NAME``).
    retired: list[str] = field(default_factory=list)
    #: Files kept, by reason (``open``, ``in_period``, ``unknown``).
    kept: dict[str, int] = field(default_factory=dict)
    #: Bundle ids of the purged bundles (stored and sent), as their headers say.
    bundles: list[str] = field(default_factory=list)
    #: What could not be done (no personal data), for the next run.
    failed: list[str] = field(default_factory=list)
    #: The audit event that records the run (None: nothing to record, or dry).
    audit_seq: int | None = None
    #: Why nothing was done (another run holds the lock).
    skipped: str | None = None

    @property
    def changes(self) -> int:
        """How many files the run purged or moved (would, when dry)."""
        return sum(map(len, self.purged.values())) + self.drop + len(self.retired)

    def counts(self) -> dict[str, int]:
        """Files purged per material, drop folder included, and retired."""
        return {**{k: len(v) for k, v in self.purged.items()}, "drop": self.drop} | {
            "retired": len(self.retired)
        }

    def as_json(self) -> dict[str, Any]:
        """The report as ``retention run --json`` prints it (schema :data:`REPORT_SCHEMA`)."""
        body = asdict(self)
        body["at"] = self.at.astimezone(dt.UTC).isoformat(timespec="seconds")
        return {"schema": REPORT_SCHEMA, **body, "counts": self.counts()}


@contextlib.contextmanager
def _run_lock(root: Path) -> Iterator[bool]:
    """True inside the block when this run holds the retention lock of the spool at ``root``
    (an ``flock`` on ``root/.retention.lock``, as :func:`~exchange_server.spool.unheld`
    takes it)."""
    lock = private_dir(root) / LOCK_NAME
    with contextlib.suppress(FileExistsError):
        os.close(os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    with unheld(lock) as free:
        yield free


def _judge(
    items: list[Item], policy: RetentionConfig, report: Report, now: dt.datetime
) -> list[tuple[Item, Verdict]]:
    acts: list[tuple[Item, Verdict]] = []
    kept: Counter[str] = Counter()
    for item in items:
        verdict = decide(item, policy, now)
        if verdict in (Verdict.PURGE, Verdict.RETIRE):
            acts.append((item, verdict))
        else:
            kept[verdict.value] += 1
    report.kept = dict(sorted(kept.items()))
    for item, verdict in acts:
        if verdict is Verdict.RETIRE:
            report.retired.append(item.label)
        elif item.material is Material.DROP:
            report.drop += 1
        else:
            report.purged.setdefault(item.material.value, []).append(item.label)
            header = sealed_header(item.path) if item.material is not Material.QUARANTINE else None
            if header is not None:
                report.bundles.append(str(header.bundle_id))
    report.bundles.sort()
    return acts


def _detail(report: Report) -> dict[str, Any]:
    """The audit event's detail: counts, ids and names the node made; never a drop file's
    name."""
    return {
        "counts": report.counts(),
        "bundles": report.bundles,
        "stored": report.purged.get(Material.STORED.value, []),
        "sent": sorted(
            report.purged.get(Material.OUTBOX.value, [])
            + report.purged.get(Material.SENT.value, [])
        ),
        "quarantine": report.purged.get(Material.QUARANTINE.value, []),
        "retired": report.retired,
        "policy": report.policy,
    }


def _act(item: Item, verdict: Verdict, spool_root: Path) -> Path:
    """Delete ``item``'s file, or move it from the outbox to ``spool/sent/<CODE>/``; return the
    folder changed. Raises ``OSError``. The move never replaces a file already there."""
    if verdict is Verdict.RETIRE:
        code = item.label.split("/", 1)[0]
        target = private_dir(spool_root / "sent" / code) / item.path.name
        os.link(item.path, target)  # FileExistsError rather than replacing evidence
        fsync_dir(target.parent)
    item.path.unlink(missing_ok=True)
    return item.path.parent


def run_retention(
    node: Node, now: dt.datetime, *, dry_run: bool = False, actor: str = "node"
) -> Report:
    """Purge what expired at ``now`` under ``[retention]`` and move pulled outbox files to the
    node's evidence; return what was done. With ``dry_run`` nothing changes: the report says
    what a run would do.

    One audit event (``retention.purged``, by ``actor``) records a run that purges or moves
    anything, committed before the first file goes. A file that cannot be removed is named in
    ``failed`` (and the log), and the next run tries again. When another run holds the lock
    (``spool/.retention.lock``), nothing is done and ``skipped`` says so. Raises what the
    store raises when the event cannot be recorded (then nothing was removed).
    """
    cfg = node.config
    spool_root = cfg.path(cfg.spool)
    policy = cfg.retention
    report = Report(at=now, dry_run=dry_run, policy=asdict(policy))
    with _run_lock(spool_root) as held:
        if not held:
            report.skipped = "another retention run holds the lock"
            return report
        items = scan(node, spool_root, cfg.path(cfg.drop))
        acts = _judge(items, policy, report, now)
        if dry_run or not acts:
            return report
        with node.session() as s:
            [event] = append_events(
                s, [EventSpec(actor, PURGE_ACTION, None, _detail(report))], now=now
            )
        report.audit_seq = event.seq
        touched: set[Path] = set()
        for item, verdict in acts:
            try:
                touched.add(_act(item, verdict, spool_root))
            except OSError as e:
                what = item.label or "a drop-folder file"
                report.failed.append(f"{item.material.value} {what}: {e.strerror or e}")
        for folder in touched:
            with contextlib.suppress(OSError):
                fsync_dir(folder)
    for problem in report.failed:
        log.error("retention: could not remove %s", problem)
    log.info("retention run: %s (audit event %s)", report.counts(), report.audit_seq)
    return report


async def keep_retention(
    node: Node,
    *,
    clock: Callable[[], dt.datetime] = utcnow,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Run :func:`run_retention` now and then every ``[retention] interval_minutes`` until
    cancelled (for ``serve``). A failed run is logged, never fatal: the next one tries again."""
    while True:
        try:
            await asyncio.to_thread(run_retention, node, clock())
        except Exception:
            log.exception("retention run failed")
        await sleep(node.config.retention.interval_minutes * 60)
