"""The pipeline's queue and its recovery after a crash: which uploads are still open, and the
spool made consistent before anything else runs."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from sqlmodel import col, select

from exchange_server.node import Node
from exchange_server.spool import Spool, unheld
from exchange_server.store.models import BundleState, Upload

__all__ = ["OPEN_STATES", "pending_uploads", "recover_spool"]

log = logging.getLogger("exchange_server.pipeline.runner")

#: States from which the pipeline still moves an upload.
OPEN_STATES = (BundleState.RECEIVED, BundleState.ACCEPTED)


def _quarantine_orphan(node: Node, spool: Spool, f: Path) -> None:
    """Quarantine ``f`` unless a commit holds it: another node process sharing the spool may
    be between the rename into ``incoming/`` and the record (its writer holds an ``flock`` on
    the file until the record is durable, :meth:`Handover.accept_upload`)."""
    with unheld(f) as free:
        if not free:
            return  # a commit in progress
        with node.session(write=False) as s:
            if s.get(Upload, f.name) is not None:
                return  # recorded while we looked
        log.warning("unacknowledged upload %s quarantined at recovery", f.name)
        f.replace(spool.quarantine / f"orphan-{f.name}")


def recover_spool(node: Node, spool: Spool) -> None:
    """Bring the spool back to a consistent state after a crash (idempotent).

    Partial uploads no transport holds are deleted; complete files in ``incoming/`` that have
    no upload record were never acknowledged, so they are quarantined, never processed. Work
    folders (plaintext while a bundle is reviewed or answered) of uploads that are no longer
    open are removed; those of open uploads are redone when they are processed.
    """
    # Partials an upload still writes are skipped: the SFTP front holds an flock on each
    # partial it writes, and another node process sharing the spool may be serving.
    spool.remove_orphan_partials()
    with node.session(write=False) as s:
        known = set(s.exec(select(Upload.id)).all())
    for f in spool.incoming.iterdir():
        if f.is_file() and not f.name.startswith(".") and f.name not in known:
            _quarantine_orphan(node, spool, f)
    work = spool.root / "work"
    if work.is_dir():
        still_open = set(pending_uploads(node))
        for d in work.iterdir():
            if d.name not in still_open:
                shutil.rmtree(d, ignore_errors=True)


def pending_uploads(node: Node) -> list[str]:
    """Upload ids the pipeline still moves, oldest first: open, and not given up on (fewer
    failed attempts than ``limits.max_attempts``)."""
    with node.session(write=False) as s:
        return list(
            s.exec(
                select(Upload.id)
                .where(col(Upload.state).in_([st.value for st in OPEN_STATES]))
                .where(col(Upload.attempts) < node.config.limits.max_attempts)
                .order_by(col(Upload.received_at), col(Upload.id))
            ).all()
        )
