"""The ingest pipeline: from a complete upload to a final state and exactly one signed receipt.

State machine (recorded in the ``upload`` table, files moved atomically)::

    received -> verified -> accepted -> routed -> done
                      \\-> rejected (quarantined, rejection receipt)

This module's first half is the durable hand-over from the transports (SFTP, drop folder):
:meth:`Ingest.accept_upload` makes a finished upload durable *before* the transport acknowledges
it, so an acknowledged upload is never lost, and an unacknowledged one is never processed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
from collections.abc import Callable
from pathlib import Path

from exchange_server.node import Node, utcnow
from exchange_server.spool import Spool
from exchange_server.store.models import BundleState, Upload
from pki._fs import fsync_dir

__all__ = ["Ingest"]

log = logging.getLogger("exchange_server.ingest")


class Ingest:
    """Hand-over point between transports and the pipeline."""

    def __init__(self, node: Node, *, clock: Callable[[], dt.datetime] = utcnow):
        self.node = node
        self.clock = clock
        self.spool = Spool(node.config.path(node.config.spool))
        self._wakeup = asyncio.Event()

    def new_partial(self) -> tuple[str, Path]:
        """An upload id and the temporary file a transport writes the upload to."""
        return self.spool.new_partial()

    def accept_upload(
        self,
        *,
        upload_id: str,
        dept: str,
        partial: Path,
        file_name: str,
        remote_addr: str | None,
        source: str = "sftp",
    ) -> None:
        """Make a complete upload durable and queue it; call before acknowledging the upload.

        The partial file is fsynced, renamed into ``incoming/`` and recorded as ``received``
        in one step each; if the node dies between the rename and the record, recovery
        quarantines the orphan (it was never acknowledged, so the sender retries).
        """
        with partial.open("rb") as fh:
            os.fsync(fh.fileno())
        size = partial.stat().st_size
        target = self.spool.incoming_path(upload_id)
        partial.replace(target)
        fsync_dir(target.parent)
        now = self.clock()
        with self.node.session() as s:
            s.add(
                Upload(
                    id=upload_id,
                    dept_code=dept,
                    source=source,
                    remote_addr=remote_addr,
                    file_name=file_name[:255],
                    size=size,
                    state=BundleState.RECEIVED.value,
                    received_at=now,
                    updated_at=now,
                )
            )
        log.info("upload %s from %s committed (%d bytes)", upload_id, dept, size)
        self.wake()

    def discard_partial(self, partial: Path) -> None:
        """Remove an aborted upload's temporary file (nothing of it is ever processed)."""
        partial.unlink(missing_ok=True)

    def wake(self) -> None:
        """Tell the pipeline there is work."""
        self._wakeup.set()
