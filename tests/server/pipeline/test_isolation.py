"""One bundle's failure never holds up another's, and never jams the pipeline: a batch that
fails is redone one by one, and an upload that keeps failing with a node-side error is given
up after ``limits.max_attempts``: before its receipt with a signed ``E_NODE_FAULT`` rejection
and its bundle id released; after it, held out of the queue for the operator.

Runs on SQLite and PostgreSQL (when reachable) through the ``store_url`` fixture.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from exchange_server.outbox.receipts import receipt_name
from exchange_server.pipeline.router import AcceptedBundle, RouteOutcome
from exchange_server.store.models import AuditEvent, SeenBundle, Upload
from tests.conftest import CAFixture
from tests.server.pipeline.test_ingest import _outbox_receipts, _receipt, _upload
from tests.server.world import KeepRouter, World, build_world

MZ, RS = "MZ330100", "RS330100"


@pytest.fixture
def world(tmp_path: Path, test_ca: CAFixture, store_url: str) -> World:
    return build_world(tmp_path, test_ca, store_url)


class PoisonRouter(KeepRouter):
    """A node fault for chosen bundles: in review (``review_fails``) or in routing."""

    def __init__(self) -> None:
        self.review_fails: set[str] = set()
        self.route_fails: set[str] = set()

    def review(self, bundle: AcceptedBundle) -> dict[str, Any]:
        if bundle.bundle_id in self.review_fails:
            raise ValueError("Exceeds the limit (4300 digits) for integer string conversion")
        return {}

    def route(self, bundle: AcceptedBundle) -> RouteOutcome:
        if bundle.bundle_id in self.route_fails:
            raise RuntimeError("the engine fell over")
        return super().route(bundle)


def _attempts(world: World, upload_id: str) -> int:
    return _upload(world, upload_id).attempts


def test_poison_bundle_in_a_batch_holds_up_no_other_and_is_given_up(world: World) -> None:
    """The attack: a review that raises (a 5,000-digit count) kept its upload accepted with no
    receipt, retried for ever, and delayed its whole batch. Now the others of the batch go
    through at once, and after max_attempts the poison gets a signed E_NODE_FAULT rejection,
    its file is quarantined and its bundle id is released: the same bundle can be resent."""
    router = PoisonRouter()
    world.ingest.router = router
    poison_id = uuid.uuid4()
    poison = world.seal(MZ, bundle_id=poison_id)
    router.review_fails.add(str(poison_id))
    ids = [
        world.upload(MZ, poison),
        world.upload(RS, world.seal(RS)),
        world.upload(MZ, world.seal(MZ)),
    ]
    assert world.ingest.process_batch_safely(ids) is False
    assert [_upload(world, u).state for u in ids] == ["accepted", "done", "done"]
    assert world.ingest.pending() == [ids[0]] and _attempts(world, ids[0]) == 1
    limit = world.node.config.limits.max_attempts
    for n in range(2, limit + 1):
        assert world.ingest.process_batch_safely([ids[0]]) is False
        assert _attempts(world, ids[0]) == n
    up = _upload(world, ids[0])
    assert (up.state, up.reason_code) == ("rejected", "E_NODE_FAULT")
    assert world.ingest.pending() == []
    receipt = _receipt(world, MZ, ids[0])
    assert receipt["verdict"] == "rejected" and receipt["reason_code"] == "E_NODE_FAULT"
    assert "4300" not in str(receipt)  # the exception's text stays in the log
    assert (world.ingest.spool.quarantine / ids[0]).exists()
    with world.node.session(write=False) as s:
        assert s.get(SeenBundle, str(poison_id)) is None  # released
    # once the cause is gone, the very same bundle is accepted (not a replay)
    router.review_fails.clear()
    again = world.upload(MZ, poison)
    assert world.ingest.process(again).value == "done"
    assert _outbox_receipts(world, MZ).count(f"receipt-{ids[0]}.bundle") <= 1


def test_bundle_whose_routing_keeps_failing_is_held_after_its_receipt(world: World) -> None:
    """A failure after the receipt (routing) cannot be taken back by a rejection: after
    max_attempts the upload leaves the queue, keeps its one receipt, and the operator sees it
    (log, audit ``bundle.held``); the next upload is processed."""
    router = PoisonRouter()
    world.ingest.router = router
    bad_id = uuid.uuid4()
    router.route_fails.add(str(bad_id))
    upload_id = world.upload(RS, world.seal(RS, bundle_id=bad_id))
    for _ in range(world.node.config.limits.max_attempts):
        assert world.ingest.process_batch_safely([upload_id]) is False
    assert _upload(world, upload_id).state == "accepted"
    assert world.ingest.pending() == []
    # its one receipt (written before routing; the state that records it never came)
    assert _outbox_receipts(world, RS) == [receipt_name(upload_id)]
    assert _receipt(world, RS, upload_id)["verdict"] == "accepted"
    with world.node.session(write=False) as s:
        held = s.exec(select(AuditEvent).where(AuditEvent.action == "bundle.held")).all()
        assert [e.subject for e in held] == [str(bad_id)]
        assert s.get(Upload, upload_id) is not None
    nxt = world.upload(RS, world.seal(RS))
    assert world.ingest.process(nxt).value == "done"
