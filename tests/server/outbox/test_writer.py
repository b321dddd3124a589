"""The one outbox writer: sealed for the registered department, named, exactly once."""

from __future__ import annotations

import datetime as dt
import io
import threading
from pathlib import Path

import pytest

from exchange_common.errors import InputError
from exchange_server.outbox.receipts import Receipt, receipt_name, send_receipt
from exchange_server.outbox.writer import Outbox, result_bundle_id
from pki.bundle import BundleKind, Member, open_bundle, verify
from tests.conftest import CAFixture
from tests.server.world import World, build_world


def _now() -> dt.datetime:
    """The current time, read when a test runs: certificates are issued at test time, so a
    time taken when the module was collected can precede their validity on a slow run."""
    return dt.datetime.now(dt.UTC)


@pytest.fixture
def world(tmp_path: Path, test_ca: CAFixture) -> World:
    return build_world(tmp_path, test_ca)


def _members(text: str = "hello") -> list[Member]:
    data = text.encode()
    return [Member("a.txt", io.BytesIO(data), size=len(data))]


def _open(world: World, dept: str, path: Path, out: Path) -> tuple[dict[str, object], bytes]:
    issued = world.depts[dept]
    assert issued.key is not None
    opened = open_bundle(
        path,
        out,
        recipient_key=issued.key,
        recipient_cert=issued.certificate,
        trust=world.node.trust(),
        now=_now(),
    )
    return dict(opened.manifest.fields), opened.paths[0].read_bytes()


def test_delivery_is_sealed_for_the_registered_department(world: World) -> None:
    outbox = Outbox(world.node, world.ingest.spool)
    d = outbox.deliver(
        "MZ330100", "r-1.bundle", _members(), kind=BundleKind.RESULT, fields={"k": 1}, now=_now()
    )
    assert d.written and d.name == "r-1.bundle"
    assert d.path == world.ingest.spool.outbox("MZ330100") / "r-1.bundle"
    fields, body = _open(world, "MZ330100", d.path, world.tmp / "o1")
    assert fields == {"k": 1} and body == b"hello"
    # not readable by another department
    with pytest.raises(Exception):  # noqa: B017 - any refusal will do, the point is no plaintext
        _open(world, "RS330100", d.path, world.tmp / "o2")
    assert not (world.tmp / "o2" / "a.txt").exists()


def test_second_delivery_under_the_same_name_writes_nothing(world: World) -> None:
    outbox = Outbox(world.node, world.ingest.spool)
    first = outbox.deliver(
        "MZ330100", "r.bundle", _members("one"), kind=BundleKind.RESULT, fields={}, now=_now()
    )
    before = first.path.read_bytes()
    again = outbox.deliver(
        "MZ330100", "r.bundle", _members("two"), kind=BundleKind.RESULT, fields={}, now=_now()
    )
    assert first.written and not again.written
    assert again.path.read_bytes() == before


def test_concurrent_deliveries_leave_exactly_one_bundle(world: World) -> None:
    outbox = Outbox(world.node, world.ingest.spool)
    results: list[bool] = []
    lock = threading.Lock()

    def go(i: int) -> None:
        d = outbox.deliver(
            "MZ330100", "c.bundle", _members(str(i)), kind=BundleKind.RESULT, fields={}, now=_now()
        )
        with lock:
            results.append(d.written)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]
    folder = world.ingest.spool.outbox("MZ330100")
    assert [p.name for p in folder.iterdir()] == ["c.bundle"]  # no temporary files left


def test_unknown_department_is_refused_and_nothing_is_written(world: World) -> None:
    outbox = Outbox(world.node, world.ingest.spool)
    with pytest.raises(InputError) as e:
        outbox.deliver(
            "GA330100", "x.bundle", _members(), kind=BundleKind.RESULT, fields={}, now=_now()
        )
    assert e.value.code == "E_UNKNOWN_DEPT"
    assert not any(world.ingest.spool.outbox("GA330100").iterdir())


def test_receipt_bundle_id_is_a_function_of_the_upload(world: World) -> None:
    outbox = Outbox(world.node, world.ingest.spool)
    receipt = Receipt(
        upload_id="7d0c6f2e-55a4-4b8e-9b1c-0d3f9a1e2b3c",
        bundle_id=None,
        file_name="x.bundle",
        file_sha256="",
        size=3,
        verdict="rejected",
        reason_code="E_FORMAT",
        reason="not a bundle",
        received_at="2026-12-02T08:00:00Z",
        decided_at="2026-12-02T08:00:01Z",
        node="NODE01",
    )
    d = send_receipt(outbox, "MZ330100", receipt, now=_now())
    assert d.name == receipt_name(receipt.upload_id)
    fields, body = _open(world, "MZ330100", d.path, world.tmp / "r")
    assert fields["reason_code"] == "E_FORMAT"
    assert b'"verdict": "rejected"' in body
    vb = verify(d.path, world.node.trust(), now=_now())
    assert vb.header.bundle_id == result_bundle_id("receipt", receipt.upload_id)
