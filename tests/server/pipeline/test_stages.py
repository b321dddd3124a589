"""Per-stage timings of the pipeline, and rejections written as one batch.

Runs on SQLite and PostgreSQL (when reachable) through the ``store_url`` fixture.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from exchange_server.outbox.receipts import receipt_name
from exchange_server.pipeline import runner as runner_module
from exchange_server.pipeline.router import AcceptedBundle, Refusal
from exchange_server.pipeline.stages import STAGES, StageTimes, parse_timings
from exchange_server.store.audit import verify_chain
from exchange_server.store.models import Upload
from tests.conftest import CAFixture
from tests.server.world import World, build_world


@pytest.fixture
def world(tmp_path: Path, test_ca: CAFixture, store_url: str) -> World:
    return build_world(tmp_path, test_ca, store_url)


def _timing_lines(caplog: pytest.LogCaptureFixture) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for record in caplog.records:
        line = f"{record.name}: {record.getMessage()}"
        parsed = parse_timings(line)
        if parsed is not None:
            out[line.split(" upload ", 1)[1].split()[0]] = parsed
    return out


def test_each_upload_of_a_batch_logs_one_timings_line_naming_its_stages(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    good = world.upload("RS330100", world.seal("RS330100"))
    bad = world.upload("MZ330100", b"not a bundle")
    with caplog.at_level(logging.INFO, logger="exchange_server.pipeline.stages"):
        states = world.ingest.process_batch([good, bad])
    assert states[good].value == "done" and states[bad].value == "rejected"
    lines = _timing_lines(caplog)
    assert set(lines) == {good, bad}
    # the accepted one went through every stage up to its record; the refused one was
    # never admitted nor reviewed
    assert {"queued", "verify", "admit", "review", "receipt", "record"} <= set(lines[good])
    assert "admit" not in lines[bad] and "review" not in lines[bad]
    assert {"queued", "verify", "receipt", "record"} <= set(lines[bad])
    for stages in lines.values():
        assert set(stages) <= {*STAGES, "total"}
        assert all(v >= 0 for v in stages.values())
        assert stages["total"] == pytest.approx(
            sum(v for k, v in stages.items() if k not in {"queued", "total"}), abs=0.5
        )
    assert world.ingest.stages.report(good, "x") == {}  # forgotten once reported


def test_a_failed_batch_still_logs_and_forgets_its_uploads(
    world: World, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    up = world.upload("RS330100", world.seal("RS330100"))

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("store away")

    monkeypatch.setattr(runner_module.Runner, "_admit", broken)
    with (
        caplog.at_level(logging.INFO, logger="exchange_server.pipeline.stages"),
        pytest.raises(RuntimeError),
    ):
        world.ingest.process_batch([up])
    assert "state=failed" in caplog.text
    assert world.ingest.stages.report(up, "x") == {}


def test_parse_timings_reads_only_timings_lines() -> None:
    times = StageTimes()
    times.add(["u1"], "verify", 0.002)
    times.add(["u1"], "verify", 0.001)
    times.add(["u1", "u2"], "record", 0.010)
    assert times.report("u1", "done") == {"verify": 3.0, "record": 10.0}
    assert parse_timings(
        "2026-12-02 10:00:00,000 INFO exchange_server.pipeline.stages: upload u1 timings: "
        "state=done total_ms=13 verify_ms=3 record_ms=10"
    ) == {"total": 13.0, "verify": 3.0, "record": 10.0}
    assert parse_timings("INFO x: upload u1 from MZ330100 committed (12 bytes)") is None
    assert parse_timings("upload u1 timings: verify_ms=fast") is None
    # a peer cannot forge one through a file name: the prefix must follow " upload <id>"
    assert parse_timings("timings: verify_ms=1") is None


def test_batched_rejections_crash_before_their_record_send_no_second_receipt(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The receipts of a batch's rejections are written before their states: a crash in
    between redoes the uploads, keeps each receipt (exactly once) and ends them rejected."""
    ids = [world.upload("MZ330100", f"garbage {i}".encode()) for i in range(3)]
    real = runner_module.append_events
    calls = {"n": 0}

    def crash_once(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("killed between the receipts and the record")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(runner_module, "append_events", crash_once)
    with pytest.raises(RuntimeError):
        world.ingest.process_batch(ids)
    outbox = world.ingest.spool.outbox("MZ330100")
    written = {i: (outbox / receipt_name(i)).read_bytes() for i in ids}
    with world.node.session() as s:
        assert {s.get(Upload, i).state for i in ids} == {"received"}  # type: ignore[union-attr]
    states = world.ingest.process_batch(ids)
    assert {states[i].value for i in ids} == {"rejected"}
    with world.node.session() as s:  # redone from the quarantine: the verdict its receipt gave
        assert {s.get(Upload, i).reason_code for i in ids} == {"E_FORMAT"}  # type: ignore[union-attr]
    assert {i: (outbox / receipt_name(i)).read_bytes() for i in ids} == written
    assert sorted(p.name for p in outbox.glob("receipt-*")) == sorted(receipt_name(i) for i in ids)
    with world.node.session() as s:
        assert verify_chain(s) > 0


def test_a_bundle_whose_rejection_crashed_is_never_admitted_on_the_redo(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused for a passing reason (a stale CRL), the node stops after the receipt and before
    the record; on the redo the bundle would verify, but its sender already holds a rejection:
    it stays rejected (E_NODE_FAULT in the store), one receipt, nothing stored or routed."""
    up = world.upload("RS330100", world.seal("RS330100"))
    real_verify, real_append = runner_module.verify, runner_module.append_events

    def stale(*args: object, **kwargs: object) -> object:
        raise runner_module.BundleError("bundle rejected: stale CRL", code="E_CRL_STALE")

    def crash(*args: object, **kwargs: object) -> object:
        raise RuntimeError("killed between the receipt and the record")

    monkeypatch.setattr(runner_module, "verify", stale)
    monkeypatch.setattr(runner_module, "append_events", crash)
    with pytest.raises(RuntimeError):
        world.ingest.process_batch([up])
    receipt = world.ingest.spool.outbox("RS330100") / receipt_name(up)
    sent = receipt.read_bytes()
    monkeypatch.setattr(runner_module, "verify", real_verify)
    monkeypatch.setattr(runner_module, "append_events", real_append)
    assert world.ingest.process_batch([up])[up].value == "rejected"
    assert receipt.read_bytes() == sent
    with world.node.session() as s:
        row = s.get(Upload, up)
        assert row is not None and row.reason_code == "E_NODE_FAULT"
        assert verify_chain(s) > 0
    assert list(world.ingest.spool.store.iterdir()) == []
    assert (world.ingest.spool.quarantine / up).is_file()


def test_a_bundle_whose_review_refusal_crashed_is_never_reviewed_again(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused at review, the node stops after the receipt and before the record; on the redo
    the review would pass, but its sender already holds a rejection: it stays rejected
    (E_NODE_FAULT in the store), one receipt, and the router never sees it again."""
    up = world.upload("RS330100", world.seal("RS330100"))
    router = world.ingest.router
    real_review, real_append = router.review, runner_module.append_events
    reviewed: list[str] = []

    def refuse(bundle: AcceptedBundle) -> object:
        raise Refusal("E_APPLICATION", "refused for the test")

    def crash(*args: object, **kwargs: object) -> object:
        if kwargs.get("now") is not None and calls["n"] > 0:
            raise RuntimeError("killed between the receipt and the record")
        calls["n"] += 1
        return real_append(*args, **kwargs)  # type: ignore[arg-type]

    calls = {"n": 0}
    monkeypatch.setattr(router, "review", refuse)
    monkeypatch.setattr(runner_module, "append_events", crash)  # admit passes, the record fails
    with pytest.raises(RuntimeError):
        world.ingest.process_batch([up])
    receipt = world.ingest.spool.outbox("RS330100") / receipt_name(up)
    sent = receipt.read_bytes()

    def review(bundle: AcceptedBundle) -> object:
        reviewed.append(bundle.upload_id)
        return real_review(bundle)

    monkeypatch.setattr(router, "review", review)
    monkeypatch.setattr(runner_module, "append_events", real_append)
    assert world.ingest.process_batch([up])[up].value == "rejected"
    assert reviewed == [] and receipt.read_bytes() == sent
    with world.node.session() as s:
        row = s.get(Upload, up)
        assert row is not None and row.reason_code == "E_NODE_FAULT"
        assert verify_chain(s) > 0
    assert list(world.ingest.spool.store.iterdir()) == []
