"""The ingest pipeline in-process: states, receipts, replay, refusals, crash recovery.

Runs on SQLite and PostgreSQL (when reachable) through the ``store_url`` fixture.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fcntl
import json
import os
import uuid
from pathlib import Path

import pytest
from sqlmodel import select

from exchange_common.codes import REGISTRY
from exchange_common.limits import Limits
from exchange_server.outbox.receipts import receipt_name
from exchange_server.pipeline.router import AcceptedBundle, RouteOutcome
from exchange_server.store.audit import verify_chain
from exchange_server.store.models import Upload
from pki.bundle import open_bundle, verify
from tests.conftest import CAFixture
from tests.server.world import KeepRouter, World, build_world


@pytest.fixture
def world(tmp_path: Path, test_ca: CAFixture, store_url: str) -> World:
    return build_world(tmp_path, test_ca, store_url)


def _upload(world: World, upload_id: str) -> Upload:
    with world.node.session() as s:
        up = s.get(Upload, upload_id)
        assert up is not None
        return up


def _receipt(world: World, dept: str, upload_id: str) -> dict[str, object]:
    """Verify the receipt with the trust root only, then open it as the department."""
    path = world.ingest.spool.outbox(dept) / receipt_name(upload_id)
    now = dt.datetime.now(dt.UTC)
    trust = world.node.trust()
    vb = verify(path, trust, now=now)
    assert vb.sender.code == "NODE01"
    assert vb.header.kind.value == "receipt"
    issued = world.depts[dept]
    assert issued.key is not None
    out = world.tmp / f"open-{uuid.uuid4().hex}"
    opened = open_bundle(
        path, out, recipient_key=issued.key, recipient_cert=issued.certificate, trust=trust, now=now
    )
    body = json.loads((out / "receipt.json").read_text(encoding="utf-8"))
    assert body == opened.manifest.fields
    return body


def _outbox_receipts(world: World, dept: str) -> list[str]:
    return sorted(p.name for p in world.ingest.spool.outbox(dept).glob("receipt-*.bundle"))


def test_valid_data_bundle_is_accepted_stored_and_receipted(world: World) -> None:
    bundle = world.seal("RS330100", "社保,数据\n".encode())
    upload_id = world.upload("RS330100", bundle)
    assert world.ingest.process(upload_id).value == "done"
    up = _upload(world, upload_id)
    assert up.state == "done" and up.kind == "data" and up.bundle_id
    assert (world.ingest.spool.store / f"{up.bundle_id}.bundle").read_bytes() == bundle.read_bytes()
    assert not world.ingest.spool.incoming_path(upload_id).exists()
    body = _receipt(world, "RS330100", upload_id)
    assert body["verdict"] == "accepted"
    assert body["bundle_id"] == up.bundle_id
    import hashlib

    assert body["file_sha256"] == hashlib.sha256(bundle.read_bytes()).hexdigest()
    assert body["reason_code"] is None
    with world.node.session() as s:
        assert verify_chain(s) >= 3  # 2 dept.add + accepted + done


def test_query_waits_for_the_workflow(world: World) -> None:
    upload_id = world.upload("MZ330100", world.seal("MZ330100", kind="query"))
    assert world.ingest.process(upload_id).value == "routed"
    assert _receipt(world, "MZ330100", upload_id)["verdict"] == "accepted"


@pytest.mark.parametrize(
    ("attack", "code"),
    [
        ("garbage_file", {"E_FORMAT", "E_TRUNCATED"}),
        ("bundle_signed_by_other_department", {"E_SIGNER"}),
        ("bundle_not_addressed_to_node", {"E_RECIPIENT"}),
        ("upload_from_unregistered_address", {"E_ADDRESS"}),
        ("revoked_sender_certificate", {"E_REVOKED"}),
        ("expired_bundle", {"E_EXPIRED"}),
    ],
)
def test_rejections_get_signed_receipts_and_change_nothing_else(
    world: World, attack: str, code: set[str]
) -> None:
    addr = "127.0.0.1"
    if attack == "garbage_file":
        source: Path | bytes = b"this is not a bundle at all\n" * 10
    elif attack == "bundle_signed_by_other_department":
        source = world.seal("RS330100")  # uploaded by MZ330100 below
    elif attack == "bundle_not_addressed_to_node":
        source = world.seal("MZ330100", to=[world.depts["RS330100"].certificate])
    elif attack == "upload_from_unregistered_address":
        source, addr = world.seal("MZ330100"), "127.0.0.9"
    elif attack == "revoked_sender_certificate":
        source = world.seal("MZ330100")
        world.ca.ca.revoke(serial=world.depts["MZ330100"].record.serial)
        world.refresh_crl()
    else:
        source = world.seal("MZ330100", now=dt.datetime.now(dt.UTC) - dt.timedelta(days=60))
    upload_id = world.upload("MZ330100", source, addr=addr)
    assert world.ingest.process(upload_id).value == "rejected"
    up = _upload(world, upload_id)
    assert up.reason_code in code
    assert (world.ingest.spool.quarantine / upload_id).is_file()
    assert list(world.ingest.spool.store.iterdir()) == []
    body = _receipt(world, "MZ330100", upload_id)
    assert body["verdict"] == "rejected" and body["reason_code"] == up.reason_code
    assert _outbox_receipts(world, "RS330100") == []
    # processing again changes nothing and sends no second receipt
    assert world.ingest.process(upload_id).value == "rejected"
    assert _outbox_receipts(world, "MZ330100") == [receipt_name(upload_id)]


def test_replayed_bundle_is_rejected(world: World) -> None:
    bundle = world.seal("MZ330100")
    first = world.upload("MZ330100", bundle)
    second = world.upload("MZ330100", bundle)
    assert world.ingest.process(first).value == "done"
    assert world.ingest.process(second).value == "rejected"
    assert _upload(world, second).reason_code == "E_REPLAY"
    receipt = _receipt(world, "MZ330100", second)
    assert receipt["reason_code"] == "E_REPLAY"
    # the registry's text for the code, and the rule's own words beside it
    assert receipt["reason"] == REGISTRY["E_REPLAY"].peer_text
    assert receipt["explanation"] == "bundle was already received"
    assert len(list(world.ingest.spool.store.iterdir())) == 1


class _CrashingRouter(KeepRouter):
    """Dies like a killed node: after the receipt was written, before the state is recorded."""

    def route(self, bundle: AcceptedBundle) -> RouteOutcome:
        raise SystemExit("simulated crash")


def test_crash_after_receipt_before_state_sends_no_second_receipt(world: World) -> None:
    upload_id = world.upload("MZ330100", world.seal("MZ330100"))
    world.ingest.router = _CrashingRouter()
    with pytest.raises(SystemExit):
        world.ingest.process(upload_id)
    assert _upload(world, upload_id).state == "accepted"
    assert _outbox_receipts(world, "MZ330100") == [receipt_name(upload_id)]
    assert world.ingest.pending() == [upload_id]
    world.ingest.router = KeepRouter()  # restart resumes from the recorded state
    assert world.ingest.process(upload_id).value == "done"
    assert _outbox_receipts(world, "MZ330100") == [receipt_name(upload_id)]


def test_batch_matches_one_by_one_and_catches_replay_inside_the_batch(world: World) -> None:
    first = world.seal("MZ330100")
    ids = [
        world.upload("MZ330100", first),
        world.upload("RS330100", world.seal("RS330100")),
        world.upload("MZ330100", first),  # the same bundle again, in the same batch
        world.upload("MZ330100", b"garbage"),
        world.upload("MZ330100", world.seal("RS330100")),  # signed by someone else
        world.upload("MZ330100", world.seal("MZ330100", kind="query")),
    ]
    states = world.ingest.process_batch(ids)
    assert [states[i].value for i in ids] == [
        "done",
        "done",
        "rejected",
        "rejected",
        "rejected",
        "routed",
    ]
    assert [_upload(world, i).reason_code for i in ids] == [
        None,
        None,
        "E_REPLAY",
        _upload(world, ids[3]).reason_code,
        "E_SIGNER",
        None,
    ]
    assert _upload(world, ids[3]).reason_code in {"E_FORMAT", "E_TRUNCATED"}
    for i in ids:
        dept = _upload(world, i).dept_code
        assert receipt_name(i) in _outbox_receipts(world, dept)
    with world.node.session() as s:
        assert verify_chain(s) > 0
    assert world.ingest.pending() == []


def test_recovery_quarantines_unacknowledged_files_and_drops_partials(world: World) -> None:
    spool = world.ingest.spool
    orphan = spool.incoming / str(uuid.uuid4())
    orphan.write_bytes(b"never acknowledged")
    _, partial = spool.new_partial()
    partial.write_bytes(b"half an upload")
    kept = world.upload("MZ330100", world.seal("MZ330100"))
    world.ingest.recover()
    assert not orphan.exists() and not partial.exists()
    assert (spool.quarantine / f"orphan-{orphan.name}").read_bytes() == b"never acknowledged"
    assert spool.incoming_path(kept).exists()
    with world.node.session() as s:
        assert len(s.exec(select(Upload)).all()) == 1


def test_recovery_of_another_process_leaves_a_commit_in_progress_alone(world: World) -> None:
    """Two node processes share a spool: one restarts (recovery) while the other is between
    renaming an upload into incoming/ and recording it. The committing process holds a lock
    on the file until its record is durable, so recovery leaves it; an unlocked file without
    a record is still an orphan."""
    spool = world.ingest.spool
    live = spool.incoming / str(uuid.uuid4())
    live.write_bytes(b"being committed by the other process")
    fd = os.open(live, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        world.ingest.recover()
        assert live.exists()  # left alone while locked
    finally:
        os.close(fd)
    world.ingest.recover()
    assert not live.exists() and (spool.quarantine / f"orphan-{live.name}").exists()


def test_the_node_limits_from_node_toml_bound_every_bundle(world: World) -> None:
    """[limits] in node.toml is the object the pipeline verifies with: a bundle over it is
    refused with a signed receipt, and the next one within it is accepted."""
    big = world.seal("MZ330100", b"x" * 50_000)
    small = world.seal("MZ330100")
    world.node.config = dataclasses.replace(
        world.node.config, limits=Limits(max_total_size=small.stat().st_size + 1024)
    )
    refused = world.upload("MZ330100", big)
    assert world.ingest.process(refused).value == "rejected"
    assert _upload(world, refused).reason_code == "E_LIMIT"
    assert _receipt(world, "MZ330100", refused)["reason_code"] == "E_LIMIT"
    assert world.ingest.process(world.upload("MZ330100", small)).value == "done"


def test_drop_folder_bundle_refused_for_a_stale_crl_gets_a_receipt_to_its_signer(
    world: World,
) -> None:
    """A bundle from the drop folder has no account to answer; refused because the node's CRL
    is stale, it used to get no receipt at all. Its signer, verified in every other respect,
    now gets the signed rejection (and a bundle whose signature does not verify still none)."""
    bundle = world.seal("MZ330100")
    upload_id, partial = world.handover.new_partial()
    partial.write_bytes(bundle.read_bytes())
    world.handover.accept_upload(
        upload_id=upload_id, dept="", partial=partial, file_name="d.bundle",
        remote_addr=None, source="drop",
    )  # fmt: skip
    crl = world.node.config.path(world.node.config.crl)
    crl.write_bytes(world.ca.ca.crl(now=dt.datetime.now(dt.UTC) - dt.timedelta(days=30), days=1))
    try:
        assert world.ingest.process(upload_id).value == "rejected"
        forged_id, forged = world.handover.new_partial()
        data = bytearray(bundle.read_bytes())
        data[-10] ^= 0xFF  # a broken signature: no signer to find
        forged.write_bytes(bytes(data))
        world.handover.accept_upload(
            upload_id=forged_id, dept="", partial=forged, file_name="f.bundle",
            remote_addr=None, source="drop",
        )  # fmt: skip
        assert world.ingest.process(forged_id).value == "rejected"
    finally:
        crl.write_bytes(world.ca.ca.crl())  # a current CRL again, to read the receipt
    up = _upload(world, upload_id)
    assert up.reason_code == "E_CRL_STALE"
    assert _outbox_receipts(world, "MZ330100") == [receipt_name(upload_id)]
    receipt = _receipt(world, "MZ330100", upload_id)
    assert receipt["verdict"] == "rejected" and receipt["reason_code"] == "E_CRL_STALE"
    assert _upload(world, forged_id).receipt_name is None
