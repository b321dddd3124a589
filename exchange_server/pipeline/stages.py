"""Where an upload's time goes in the pipeline: per-stage timings, one log line per upload.

The runner times each stage of a batch (:data:`STAGES`) for the uploads in it and, when the
batch is done, logs one line per upload::

    upload 0b7c… timings: state=sent total_ms=41 queued_ms=12 verify_ms=3 admit_ms=4 …

``queued`` is the wall-clock time from the upload's hand-over (its ``received_at``) to the start
of the batch that took it: the wait for the pipeline. A stage shared by the batch (one
transaction, one directory fsync) counts in full for each upload in it. The lines carry no
personal data (ids, states and milliseconds); ``bench/sftp_upload.py`` reads them to print each
stage's p50/p99, so a regression names its stage.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

__all__ = ["STAGES", "StageTimes", "parse_timings"]

log = logging.getLogger("exchange_server.pipeline.stages")

#: The stages in the order an upload meets them.
STAGES = ("queued", "verify", "admit", "review", "receipt", "route", "record")

_PREFIX = " timings: "


class StageTimes:
    """Seconds per stage per upload, for the uploads of the batches in progress (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._times: dict[str, dict[str, float]] = {}

    def queued(self, upload_id: str, received_at: dt.datetime) -> None:
        """Record the wait from ``received_at`` (an aware time) until now."""
        self.add([upload_id], "queued", max(0.0, time.time() - received_at.timestamp()))

    def add(self, upload_ids: Iterable[str], stage: str, seconds: float) -> None:
        """Add ``seconds`` to ``stage`` of each of ``upload_ids``."""
        with self._lock:
            for u in upload_ids:
                steps = self._times.setdefault(u, {})
                steps[stage] = steps.get(stage, 0.0) + seconds

    @contextmanager
    def timed(self, upload_ids: Iterable[str], stage: str) -> Iterator[None]:
        """Add the wall-clock time of the block to ``stage`` of each of ``upload_ids``."""
        ids = list(upload_ids)
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(ids, stage, time.perf_counter() - started)

    def report(self, upload_id: str, state: str) -> dict[str, float]:
        """Log the upload's line and forget its timings; returns them (milliseconds)."""
        with self._lock:
            steps = self._times.pop(upload_id, {})
        ms = {k: round(steps[k] * 1000, 1) for k in STAGES if k in steps}
        total = round(sum(v for k, v in ms.items() if k != "queued"), 1)
        fields = " ".join(f"{k}_ms={v:g}" for k, v in ms.items())
        log.info("upload %s%sstate=%s total_ms=%g %s", upload_id, _PREFIX, state, total, fields)
        return ms


def parse_timings(line: str) -> dict[str, float] | None:
    """The stage milliseconds of one line written by :meth:`StageTimes.report` (the whole log
    line, or only its message), or None for any other line (``total`` included, ``state`` left
    out)."""
    at = line.find(_PREFIX)
    head = line[:at]
    if at < 0 or not (head.startswith("upload ") or " upload " in head):
        return None
    out: dict[str, float] = {}
    for field in line[at + len(_PREFIX) :].split():
        key, sep, value = field.partition("=")
        if sep and key.endswith("_ms"):
            try:
                out[key[:-3]] = float(value)
            except ValueError:
                return None
    return out
