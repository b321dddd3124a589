"""The transports' hand-over: a finished upload becomes durable before it is acknowledged.

The SFTP front and the drop folder know only :class:`Handover`: they write an upload to the
temporary file :meth:`Handover.new_partial` gives them, then call
:meth:`Handover.accept_upload` *before* they acknowledge it. That call fsyncs the file, renames
it into ``incoming/`` and records it as ``received``, and returns only once the record is
committed, so an acknowledged upload is never lost and an unacknowledged one is never
processed. Then it wakes the pipeline (:mod:`exchange_server.pipeline.runner`), in this
process or, through ``wake``, in the pipeline's own process.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

from exchange_common.fs import fsync_dir
from exchange_server.node import Node
from exchange_server.spool import Spool
from exchange_server.store.models import BundleState, Upload

__all__ = ["Handover"]

log = logging.getLogger(__name__)


class Handover:
    """Where transports hand complete uploads to the pipeline."""

    def __init__(
        self,
        node: Node,
        spool: Spool,
        *,
        clock: Callable[[], dt.datetime],
        wake: Callable[[], None],
    ) -> None:
        self.node = node
        self.spool = spool
        self.clock = clock
        self._wake = wake
        self._committer = _GroupCommitter(node)

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

        The partial file is made owner-only (0600), fsynced, renamed into ``incoming/`` and
        recorded as ``received`` in one step each, the file locked until its record is
        durable; if the node dies between the rename and the record, recovery quarantines the
        orphan (it was never acknowledged, so the sender retries). Raises what the store
        raises when the record cannot be committed (then do not acknowledge).
        """
        # The file stays locked until its record is durable, so that another node process's
        # recovery never takes it for an orphan (the SFTP writer already holds the lock).
        fd = os.open(partial, os.O_RDONLY | os.O_CLOEXEC)
        try:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # Owner-only from here on, whatever wrote it: this file becomes the stored bundle or
            # the quarantined copy, and a rejected upload may be a plaintext table.
            os.fchmod(fd, 0o600)
            os.fsync(fd)
            size = os.fstat(fd).st_size
            target = self.spool.incoming_path(upload_id)
            partial.replace(target)
            fsync_dir(target.parent)
            now = self.clock()
            row = Upload(
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
            self._committer.commit(row)  # returns once the row is durable
        finally:
            os.close(fd)
        log.info("upload %s from %s committed (%d bytes)", upload_id, dept, size)
        self._wake()

    def discard_partial(self, partial: Path) -> None:
        """Remove an aborted upload's temporary file (nothing of it is ever processed)."""
        partial.unlink(missing_ok=True)


class _GroupCommitter:
    """Records upload rows for many concurrent uploads in shared transactions.

    Each caller blocks until its own row is committed, so no upload is acknowledged before it
    is durable; but when many uploads finish at once, one writer thread inserts all the rows
    waiting at that moment in one transaction instead of each taking the store's write lock
    in turn. At low load a row is committed alone, with no added delay.
    """

    MAX_BATCH = 128

    def __init__(self, node: Node):
        self.node = node
        self._queue: queue.SimpleQueue[tuple[Upload, Future[None]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def commit(self, row: Upload) -> None:
        """Insert ``row``; return once committed, or raise what the store raised."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="upload-committer", daemon=True
                )
                self._thread.start()
        done: Future[None] = Future()
        self._queue.put((row, done))
        done.result()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self.MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                with self.node.session() as s:
                    s.add_all([row for row, _ in batch])
            except Exception as e:
                if len(batch) == 1:
                    batch[0][1].set_exception(e)
                    continue
                # one bad row must not fail the others: retry them one by one
                for row, done in batch:
                    try:
                        with self.node.session() as s:
                            s.add(row)
                    except Exception as e1:
                        done.set_exception(e1)
                    else:
                        done.set_result(None)
                continue
            for _, done in batch:
                done.set_result(None)
