"""Prometheus metrics of a node process (``/metrics``, docs/operator-guide.md "Monitoring").

Two sources, so that the figures are right with the pipeline in its own process and with
several ``serve`` processes on one state:

- **From the store, at each scrape** (:class:`StoreCollector`): uploads by department, kind and
  state, their bytes, rejections by reason, what is held, stuck or overdue, the pipeline's
  queue, the CRL, the node certificate, the audit trail. Every process shows the same values.
- **From this process** (:data:`FRONT`): logins by result, reason and method, address bans (the
  SFTP front counts them as they happen), and the pipeline's stage latencies, read from the
  stage-timing lines its process hands to this one's log (:mod:`exchange_server.pipeline.stages`;
  at log level INFO or below). Counters start at zero when the process starts, as Prometheus
  expects.

Labels are bounded: department, kind, state, reason, stage, result, method. Never a person, a
bundle or an upload id, never an address.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import select as sa_select
from sqlmodel import col, func, select

from exchange_server.node import Node, utcnow
from exchange_server.pipeline.stages import STAGES, parse_timings
from exchange_server.store.models import Upload
from exchange_server.store.status import needs_attention, node_status

__all__ = ["FRONT", "FrontMetrics", "StoreCollector", "exposition"]

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class FrontMetrics:
    """The counters this process keeps, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.logins = Counter(
            "exchange_logins",
            "SFTP logins by result (ok, refused), reason code and method.",
            ["result", "reason", "method"],
            registry=self.registry,
        )
        self.bans = Counter(
            "exchange_address_bans", "Addresses banned after failed logins.", registry=self.registry
        )
        self.stage = Histogram(
            "exchange_pipeline_stage_seconds",
            "Time each upload spent in each pipeline stage (queued: waiting for the pipeline).",
            ["stage"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.total = Histogram(
            "exchange_pipeline_upload_seconds",
            "Time the pipeline worked on each upload, all stages but queued.",
            buckets=_BUCKETS,
            registry=self.registry,
        )

    def login_ok(self, method: str) -> None:
        """A login succeeded (``method``: ``x509`` or ``ssh-key …``, its fingerprint dropped)."""
        self.logins.labels("ok", "", method.split(" ", 1)[0]).inc()

    def login_refused(self, reason: str) -> None:
        """A connection was refused with reason code ``reason``."""
        self.logins.labels("refused", reason, "").inc()

    def observe_stages(self, line: str) -> bool:
        """Record one stage-timing log line; False for any other line."""
        ms = parse_timings(line)
        if ms is None:
            return False
        for stage in STAGES:
            if stage in ms:
                self.stage.labels(stage).observe(ms[stage] / 1000)
        if "total" in ms:
            self.total.observe(ms["total"] / 1000)
        return True


#: The counters of this process (the SFTP front and the stage lines it receives).
FRONT = FrontMetrics()


class _StageLines(logging.Handler):
    """Feeds :data:`FRONT` from the pipeline's stage-timing log records."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            FRONT.observe_stages(record.getMessage())
        except Exception:  # a metric must never break logging
            self.handleError(record)


def watch_stage_lines() -> None:
    """Attach the stage-timing reader to the pipeline's stage logger (once per process)."""
    logger = logging.getLogger("exchange_server.pipeline.stages")
    if not any(isinstance(h, _StageLines) for h in logger.handlers):
        logger.addHandler(_StageLines())


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _stamp(iso: str | None) -> float:
    return dt.datetime.fromisoformat(iso).timestamp() if iso else 0.0


class StoreCollector(Collector):
    """Gauges computed from the store and the trust files at each scrape."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def collect(self) -> Iterator[Any]:
        """One status document and two GROUP BY queries per scrape."""
        now = utcnow()
        doc = node_status(self.node, now)
        with self.node.session(write=False) as s:
            counts = s.execute(
                sa_select(
                    col(Upload.dept_code),
                    col(Upload.kind),
                    col(Upload.state),
                    func.count(),
                    func.coalesce(func.sum(Upload.size), 0),
                ).group_by(col(Upload.dept_code), col(Upload.kind), col(Upload.state))
            ).all()
            reasons = s.exec(
                select(Upload.reason_code, func.count())
                .where(Upload.state == "rejected")
                .group_by(col(Upload.reason_code))
            ).all()
        uploads = GaugeMetricFamily(
            "exchange_uploads",
            "Uploads in the store by department, kind and state.",
            labels=["department", "kind", "state"],
        )
        size = GaugeMetricFamily(
            "exchange_upload_bytes",
            "Bytes uploaded, by department, kind and state.",
            labels=["department", "kind", "state"],
        )
        for dept, kind, state, n, nbytes in counts:
            labels = [dept or "(drop folder)", kind or "(unverified)", state]
            uploads.add_metric(labels, n)
            size.add_metric(labels, float(nbytes))
        yield uploads
        yield size
        rejected = GaugeMetricFamily(
            "exchange_rejected_uploads", "Uploads rejected, by reason code.", labels=["reason"]
        )
        for reason, n in reasons:
            rejected.add_metric([reason or "?"], n)
        yield rejected
        pipe = doc["pipeline"]
        yield _gauge("exchange_held_uploads", "Uploads the pipeline holds.", len(doc["held"]))
        yield _gauge("exchange_stuck_uploads", "Uploads nothing will move.", len(doc["stuck"]))
        yield _gauge(
            "exchange_pipeline_queued", "Uploads waiting for the pipeline.", pipe["queued"]
        )
        yield _gauge(
            "exchange_pipeline_oldest_queued_seconds",
            "How long the oldest upload has waited for the pipeline.",
            pipe["oldest_queued_seconds"],
        )
        yield _gauge(
            "exchange_deadlines_overdue",
            "Relayed resources past their deadline.",
            doc["deadlines"]["overdue"],
        )
        yield _gauge(
            "exchange_deadlines_due_within_a_day",
            "Relayed resources due within a day.",
            doc["deadlines"]["due_within_a_day"],
        )
        yield _gauge("exchange_crl_current", "1 when the CRL is current.", doc["crl"]["current"])
        yield _gauge(
            "exchange_crl_next_update_timestamp_seconds",
            "When the CRL must be replaced (Unix time; 0 when unknown).",
            _stamp(doc["crl"]["next_update"]),
        )
        yield _gauge(
            "exchange_certificate_not_after_timestamp_seconds",
            "When the node certificate expires (Unix time).",
            _stamp(doc["certificate"]["not_after"]),
        )
        yield _gauge("exchange_audit_events", "Events in the audit trail.", doc["audit"]["events"])
        yield _gauge(
            "exchange_audit_checkpointed_events",
            "Audit events under a signed checkpoint.",
            doc["audit"]["checkpointed"],
        )
        yield _gauge(
            "exchange_attention",
            "1 when exchange-server status would exit 1.",
            needs_attention(doc, now),
        )


def exposition(collector: StoreCollector) -> bytes:
    """The text exposition of this process's counters and the store's gauges."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(FRONT.registry) + generate_latest(registry)
