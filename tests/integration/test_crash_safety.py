"""Crash safety: SIGKILL the node again and again while 200 bundles are uploaded and processed.

After the storm every fully uploaded bundle (the client saw its close acknowledged) must have
reached exactly one final state with exactly one receipt, nothing may be stuck, and no bundle
may be accepted twice. A client that lost its connection mid-upload retries, as a real client
would; when the lost attempt had in fact been committed, the retry is a replay and must be
rejected as such (E_REPLAY), never accepted a second time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import threading
import time
import uuid
from pathlib import Path

import asyncssh
import pytest
from sqlmodel import select

from exchange_server.store.audit import verify_chain
from exchange_server.store.models import SeenBundle
from pki.bundle import verify
from tests.integration.node_harness import DeptSpec, NodeHarness, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BUNDLES = 200
MAX_KILLS = 10
FINAL = {"done", "rejected", "routed"}


def _seal_all(h: NodeHarness, code: str, out: Path) -> list[tuple[uuid.UUID, Path]]:
    bundles = []
    for i in range(BUNDLES):
        bid = uuid.uuid4()
        body = f"id,value\n{i},{random.random()}\n".encode() * 20
        bundles.append((bid, h.seal(code, body, out / f"{i:03d}.bundle", bundle_id=bid)))
    return bundles


async def _upload_all(
    h: NodeHarness,
    code: str,
    bundles: list[tuple[uuid.UUID, Path]],
    acked: list[uuid.UUID],
    stop: threading.Event,
) -> None:
    pending = list(bundles)
    conn = sftp = None
    while pending and not stop.is_set():
        bid, path = pending[0]
        try:
            if sftp is None:
                conn = await h.asyncssh_connect(code, connect_timeout=5)
                sftp = await conn.start_sftp_client()
            await sftp.put(str(path), f"/inbox/{path.name}")
        except (TimeoutError, OSError, asyncssh.Error, EOFError):
            # the node died under us: reconnect (to the new port) and retry this bundle
            if conn is not None:
                conn.abort()
            conn = sftp = None
            await asyncio.sleep(0.2)
            continue
        acked.append(bid)
        pending.pop(0)
    if conn is not None:
        conn.close()


def test_sigkill_storm_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    with NodeHarness(tmp_path / "node", [DeptSpec("MZ330100", "杭州市民政局")]) as h:
        bundles = _seal_all(h, "MZ330100", tmp_path)
        acked: list[uuid.UUID] = []
        stop = threading.Event()
        uploader = threading.Thread(
            target=lambda: asyncio.run(_upload_all(h, "MZ330100", bundles, acked, stop)),
            daemon=True,
        )
        uploader.start()
        kills = 0
        deadline = time.monotonic() + 240
        rng = random.Random(20261122)
        # Kills are paced by the uploads' progress (a fast node would otherwise take all 200
        # between two timed kills), each at a random instant after its mark, so it lands in an
        # upload, a verification or a receipt. Bounded: on a loaded machine a restart takes
        # seconds, and an endless storm would leave the uploader no time to finish.
        marks = [BUNDLES * (k + 1) // (MAX_KILLS + 1) for k in range(MAX_KILLS)]
        for mark in marks:
            while uploader.is_alive() and len(acked) < mark and time.monotonic() < deadline:
                time.sleep(0.01)
            if not uploader.is_alive() or time.monotonic() >= deadline:
                break
            time.sleep(rng.uniform(0.0, 0.3))
            h.kill()  # SIGKILL: no clean-up of any kind
            kills += 1
            h.start()
        uploader.join(180)
        stop.set()
        uploader.join(30)
        assert len(acked) == BUNDLES, f"uploader finished only {len(acked)} of {BUNDLES}"
        assert kills >= 3, "the storm was too short to prove anything"

        # let the (restarted) node finish its queue, then look at everything it recorded
        wait_until(
            lambda: all(u.state in FINAL for u in h.uploads()),
            timeout=120,
            what="every upload to reach a final state",
        )
        uploads = h.uploads()
        by_bundle: dict[str, list[str]] = {}
        for u in uploads:
            assert u.state in FINAL
            if u.bundle_id:
                by_bundle.setdefault(u.bundle_id, []).append(u.state)
            if u.state == "rejected":
                assert u.reason_code == "E_REPLAY", (u.reason_code, u.reason_detail)

        # every acknowledged bundle accepted exactly once
        for bid in acked:
            states = by_bundle.get(str(bid), [])
            assert states.count("done") == 1, (bid, states)
        with h.node() as node, node.session() as s:
            assert len(s.exec(select(SeenBundle)).all()) == BUNDLES
            assert verify_chain(s) > 0

        # exactly one receipt per upload, no orphan receipts, each verifiable
        outbox = h.outbox("MZ330100")
        receipts = sorted(p.name for p in outbox.iterdir() if not p.name.startswith("."))
        assert sorted(u.receipt_name for u in uploads if u.receipt_name) == receipts
        assert len(receipts) == len(uploads)
        with h.node() as node:
            trust = node.trust()
            for name in receipts[:20]:
                verify(outbox / name, trust, now=dt.datetime.now(dt.UTC))
        assert h.partial_files() == []
        assert h.incoming_files() == []
