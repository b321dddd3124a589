"""Process-wide services every SFTP session of one node process shares.

:class:`SessionInfo` (who is connected), :class:`UploadBook` (uploads in progress: the "new
names only" rule and the bytes counted against the quota, across all connections; touched only
by the event loop) and :class:`SFTPServices` (node, ingest, executor, limits and the cached
quota usage of each department).
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field

from sqlalchemy.exc import IntegrityError

from exchange_server.crl import CrlStatus, crl_status
from exchange_server.front.sftp_handles import _Download
from exchange_server.node import Node, utcnow
from exchange_server.pipeline.handover import Handover
from exchange_server.spool import Spool
from exchange_server.store.pulls import department_usage, record_pull
from pki.identity import DeptCode

__all__ = [
    "SFTPServices",
    "SessionInfo",
    "UploadBook",
]


log = logging.getLogger("exchange_server.front.sftp")

#: How long a department's spool usage is reused for quota checks.
USAGE_CACHE_SECONDS = 2.0


@dataclass(frozen=True)
class SessionInfo:
    """Who is on the other end of an authenticated connection."""

    dept: DeptCode
    address: str


class UploadBook:
    """Uploads in progress in this node process: names per department and bytes per department.

    Used for the "new names only" rule and for the quota, across all connections. Only the
    event loop touches it.
    """

    def __init__(self) -> None:
        self._names: dict[str, set[str]] = {}
        self._bytes: dict[str, int] = {}

    def reserve(self, dept: str, name: str) -> bool:
        """Claim ``name`` for an upload of ``dept``; False if one with that name is under way."""
        names = self._names.setdefault(dept, set())
        if name in names:
            return False
        names.add(name)
        return True

    def grow(self, dept: str, delta: int) -> None:
        """Account ``delta`` more bytes to ``dept``'s uploads in progress."""
        self._bytes[dept] = self._bytes.get(dept, 0) + delta

    def in_flight(self, dept: str) -> int:
        """Bytes of ``dept``'s uploads in progress."""
        return self._bytes.get(dept, 0)

    def release(self, dept: str, name: str, size: int) -> None:
        """An upload ended (committed or discarded): drop its name and bytes."""
        names = self._names.get(dept)
        if names is not None:
            names.discard(name)
            if not names:
                del self._names[dept]
        left = self._bytes.get(dept, 0) - size
        if left > 0:
            self._bytes[dept] = left
        else:
            self._bytes.pop(dept, None)


@dataclass
class SFTPServices:
    """What every SFTP session of one node process needs."""

    node: Node
    ingest: Handover
    executor: Executor
    max_upload_bytes: int
    book: UploadBook = field(default_factory=UploadBook)
    started: int = field(default_factory=lambda: int(time.time()))

    @property
    def spool(self) -> Spool:
        """The node's spool (the one the ingest pipeline reads)."""
        return self.ingest.spool

    _usage_cache: dict[str, tuple[float, tuple[int, int]]] = field(default_factory=dict)

    def crl(self) -> CrlStatus:
        """Whether the node's CRL is current now (every upload commit asks)."""
        return crl_status(self.node, utcnow())

    def usage(self, dept: str) -> tuple[int, int]:
        """``(outstanding bytes, quota)`` of a department; blocking (run it in the executor).

        The answer is cached for :data:`USAGE_CACHE_SECONDS` per department: scanning an outbox
        that holds thousands of receipts at every upload would make each upload slower than
        the last. Within that window a department can exceed its quota by what it uploads
        meanwhile (each upload is still bounded by ``max_upload_bytes``).

        Outstanding is :func:`~exchange_server.store.pulls.department_usage`'s rule (outbox
        files not pulled completely, uploads still ``received``); uploads in progress are added
        by the caller from :class:`UploadBook`.
        """
        now = time.monotonic()
        cached = self._usage_cache.get(dept)
        if cached is not None and now - cached[0] < USAGE_CACHE_SECONDS:
            return cached[1]
        with self.node.session(write=False) as s:
            use = department_usage(s, self.spool.outbox(dept), dept)
        result = (use.counted_bytes, use.quota_bytes)
        self._usage_cache[dept] = (now, result)
        return result

    async def pulled(self, session: SessionInfo, download: _Download) -> None:
        """Record that ``session``'s department read all of ``download`` (a pull): in the
        executor, one transaction with its audit event the first time. The download itself
        has succeeded whatever happens here, so a store failure is logged, never raised."""
        dept = str(session.dept)

        def record() -> bool:
            with self.node.session() as s:
                return record_pull(
                    s, dept, download.name, download.size, address=session.address, now=utcnow()
                )

        try:
            first = await asyncio.get_running_loop().run_in_executor(self.executor, record)
        except IntegrityError:
            return  # another process recorded the same pull at the same moment
        except Exception as e:
            log.error(
                "pull of %s by %s not recorded: %s: %s", download.name, dept, type(e).__name__, e
            )
            return
        self._usage_cache.pop(dept, None)
        if first:
            log.info("outbox file %s pulled by %s from %s", download.name, dept, session.address)
