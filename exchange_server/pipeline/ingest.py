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
import contextlib
import datetime as dt
import hashlib
import ipaddress
import logging
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cryptography import x509
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from exchange_common.errors import ExchangeError
from exchange_common.fs import fsync_dir
from exchange_server.node import Node, utcnow
from exchange_server.outbox.receipts import Receipt, write_receipt
from exchange_server.pipeline.router import AcceptedBundle, Refusal, Router, StoreRouter
from exchange_server.spool import Spool
from exchange_server.store.audit import EventSpec, append_event, append_events
from exchange_server.store.models import (
    BundleState,
    Department,
    DepartmentNetwork,
    DeptState,
    SeenBundle,
    Upload,
    as_utc,
)
from pki.bundle import BundleError, VerifiedBundle, verify
from pki.keys import PrivateKey, fingerprint

__all__ = ["Ingest"]

log = logging.getLogger("exchange_server.pipeline.ingest")

#: Seconds before uploads whose processing failed (a node-side error) are tried again.
RETRY_SECONDS = 5.0


class Ingest:
    """Hand-over point between transports and the pipeline."""

    def __init__(
        self,
        node: Node,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
        router: Router | None = None,
        workers: int = 2,
        batch_size: int = 32,
    ):
        self.node = node
        self.clock = clock
        self.router: Router = router or StoreRouter()
        self.spool = Spool(node.config.path(node.config.spool))
        self.workers = workers
        self.batch_size = batch_size
        self._wakeup = asyncio.Event()
        #: Set by the server when the pipeline runs in a child process.
        self.notify: Callable[[], None] | None = None
        self._committer = _GroupCommitter(node)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._identity: tuple[list[x509.Certificate], PrivateKey] | None = None

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
        log.info("upload %s from %s committed (%d bytes)", upload_id, dept, size)
        self.wake()

    def discard_partial(self, partial: Path) -> None:
        """Remove an aborted upload's temporary file (nothing of it is ever processed)."""
        partial.unlink(missing_ok=True)

    def wake(self) -> None:
        """Tell the pipeline there is work (callable from any thread).

        When the pipeline runs in another process, ``notify`` carries the message there.
        """
        if self.notify is not None:
            self.notify()
            return
        loop = self._loop
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(self._wakeup.set)
        else:
            self._wakeup.set()

    # --- the pipeline -----------------------------------------------------------------------

    def recover(self) -> None:
        """Bring the spool back to a consistent state after a crash (idempotent).

        Partial uploads are deleted; complete files in ``incoming/`` that have no upload
        record were never acknowledged, so they are quarantined, never processed. Work
        folders (plaintext while a bundle is reviewed or answered) of uploads that are no
        longer open are removed; those of open uploads are redone when they are processed.
        """
        # Partials an upload still writes are skipped: the SFTP front holds an flock on each
        # partial it writes, and another node process sharing the spool may be serving.
        self.spool.remove_orphan_partials()
        with self.node.session(write=False) as s:
            known = set(s.exec(select(Upload.id)).all())
        for f in self.spool.incoming.iterdir():
            if f.is_file() and not f.name.startswith(".") and f.name not in known:
                log.warning("unacknowledged upload %s quarantined at recovery", f.name)
                f.replace(self.spool.quarantine / f"orphan-{f.name}")
        work = self.spool.root / "work"
        if work.is_dir():
            still_open = set(self.pending())
            for d in work.iterdir():
                if d.name not in still_open:
                    shutil.rmtree(d, ignore_errors=True)

    def pending(self) -> list[str]:
        """Upload ids not yet in a final state, oldest first."""
        open_states = [
            BundleState.RECEIVED.value,
            BundleState.VERIFIED.value,
            BundleState.ACCEPTED.value,
        ]
        with self.node.session(write=False) as s:
            return list(
                s.exec(
                    select(Upload.id)
                    .where(col(Upload.state).in_(open_states))
                    .order_by(col(Upload.received_at), col(Upload.id))
                ).all()
            )

    async def run(self, *, recover: bool = True) -> None:
        """Process uploads until cancelled: recovery first, then whatever arrives.

        ``recover=False`` when the caller already ran :meth:`recover` before any transport
        started (the server does, so recovery never races a live upload's commit).
        """
        self._loop = asyncio.get_running_loop()
        if recover:
            await asyncio.to_thread(self.recover)
        in_flight: set[str] = set()
        cooldown: dict[str, float] = {}
        active = 0

        def finished(ids: list[str]) -> Callable[[asyncio.Future[bool]], None]:
            def done(fut: asyncio.Future[bool]) -> None:
                nonlocal active
                active -= 1
                in_flight.difference_update(ids)
                if not fut.result():  # failed: retry these later, not in a tight loop
                    until = time.monotonic() + RETRY_SECONDS
                    cooldown.update(dict.fromkeys(ids, until))
                self._wakeup.set()

            return done

        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="ingest") as pool:
            while True:
                self._wakeup.clear()
                if active < self.workers:
                    now = time.monotonic()
                    for k in [k for k, t in cooldown.items() if t <= now]:
                        del cooldown[k]
                    ids = [
                        u
                        for u in await asyncio.to_thread(self.pending)
                        if u not in in_flight and u not in cooldown
                    ]
                    free = self.workers - active
                    while ids and free:
                        size = min(self.batch_size, -(-len(ids) // free))
                        take, ids = ids[:size], ids[size:]
                        in_flight.update(take)
                        active += 1
                        free -= 1
                        fut = self._loop.run_in_executor(pool, self.process_batch_safely, take)
                        fut.add_done_callback(finished(take))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout=1.0)

    def process_batch_safely(self, upload_ids: list[str]) -> bool:
        """:meth:`process_batch`, logging instead of raising: one bad upload never stops the
        node. Returns False if the batch failed (its uploads stay pending and are retried)."""
        try:
            self.process_batch(upload_ids)
        except Exception:
            log.exception("processing uploads %s failed; they stay pending", upload_ids)
            return False
        return True

    def process(self, upload_id: str) -> BundleState:
        """Take one upload as far as it can go; idempotent, so safe to repeat after a crash."""
        return self.process_batch([upload_id])[upload_id]

    def _node_identity(self) -> tuple[list[x509.Certificate], PrivateKey]:
        if self._identity is None:
            self._identity = self.node.identity()
        return self._identity

    def process_batch(self, upload_ids: Sequence[str]) -> dict[str, BundleState]:
        """Take several uploads as far as they can go, sharing transactions between them.

        The outcome is the same as processing them one by one in order (a bundle id repeated
        within the batch is a replay), but the database sees three transactions per batch
        instead of three per upload: one read, one that checks the senders against the
        registry and accepts (with the replay guard), and one that records the final states.
        Acceptance commits before any receipt is written, and the final state only after it,
        so a crash anywhere leaves each upload resumable from its recorded state.
        Raises LookupError for an unknown upload id.
        """
        with self.node.session(write=False) as s:
            rows = s.exec(select(Upload).where(col(Upload.id).in_(list(upload_ids)))).all()
            snaps = {r.id: r.model_copy() for r in rows}
        missing = [u for u in upload_ids if u not in snaps]
        if missing:
            raise LookupError(missing[0])
        results: dict[str, BundleState] = {u: BundleState(snaps[u].state) for u in upload_ids}
        now = self.clock()
        trust = self.node.trust()
        verified: list[tuple[Upload, VerifiedBundle, str]] = []
        for upload_id in upload_ids:
            up = snaps[upload_id]
            if results[upload_id] not in (BundleState.RECEIVED, BundleState.VERIFIED):
                continue
            path = self.spool.incoming_path(up.id)
            try:
                vb = verify(path, trust, now=now)
            except BundleError as e:
                results[up.id] = self._reject(
                    up.id, up.dept_code, e.code, e.message, e.detail, path
                )
                continue
            # From the drop folder there is no login to compare with: the signer is the sender.
            verified.append((up, vb, vb.sender.code if up.source == "drop" else up.dept_code))
        to_finish: list[tuple[Upload, str | None]] = [
            (snaps[u], None) for u in upload_ids if results[u] is BundleState.ACCEPTED
        ]
        if verified:
            try:
                accepted, refused = self._accept(verified, now)
            except IntegrityError:
                # Another node process accepted one of these bundle ids meanwhile: redo them
                # one by one, where the replay guard names the loser.
                if len(verified) == 1:
                    raise
                for up, _, _ in verified:
                    results[up.id] = self.process(up.id)
                accepted, refused = [], []
            for up, dept_code, err, bundle_id, sha256 in refused:
                path = self.spool.incoming_path(up.id)
                results[up.id] = self._reject(
                    up.id,
                    dept_code,
                    err.code,
                    err.reason,
                    err.detail,
                    path,
                    bundle_id=bundle_id,
                    sha256=sha256,
                )
            to_finish += accepted
        for up_id, state in self._receipts_and_routes(to_finish, now).items():
            results[up_id] = state
        return results

    def _accept(
        self, verified: list[tuple[Upload, VerifiedBundle, str]], now: dt.datetime
    ) -> tuple[list[tuple[Upload, str | None]], list[tuple[Upload, str, _Reject, str, str]]]:
        """Check verified bundles against the registry and accept them in one transaction.

        Checks and acceptance share the transaction, so a department disabled or re-addressed
        meanwhile is seen, and the seen_bundle primary key makes a second acceptance of one
        bundle id impossible, across node processes too.
        """
        node_fp = fingerprint(self._node_identity()[0][0])
        accepted: list[tuple[Upload, str | None]] = []
        refused: list[tuple[Upload, str, _Reject, str, str]] = []
        with self.node.session() as s:
            codes = sorted({vb.sender.code for _, vb, _ in verified})
            depts = {
                d.code: d for d in s.exec(select(Department).where(col(Department.code).in_(codes)))
            }
            nets: dict[str, list[str]] = {c: [] for c in codes}
            for code, cidr in s.exec(
                select(DepartmentNetwork.dept_code, DepartmentNetwork.cidr).where(
                    col(DepartmentNetwork.dept_code).in_(codes)
                )
            ):
                nets[code].append(cidr)
            bundle_ids = [str(vb.header.bundle_id) for _, vb, _ in verified]
            seen = {
                b.bundle_id: b.upload_id
                for b in s.exec(select(SeenBundle).where(col(SeenBundle.bundle_id).in_(bundle_ids)))
            }
            rows = {
                r.id: r
                for r in s.exec(
                    select(Upload).where(col(Upload.id).in_([u.id for u, _, _ in verified]))
                )
            }
            events: list[EventSpec] = []
            kept: list[tuple[Upload, str | None]] = []
            for up, vb, dept_code in verified:
                bundle_id = str(vb.header.bundle_id)
                dept = depts.get(vb.sender.code)
                try:
                    _check_sender(up, vb, dept_code, dept, nets[vb.sender.code], node_fp)
                    first = seen.get(bundle_id)
                    if first is not None and first != up.id:
                        raise _Reject(
                            "E_REPLAY",
                            "bundle was already received",
                            f"bundle {bundle_id} first seen in upload {first}",
                        )
                except _Reject as e:
                    refused.append((up, dept_code, e, bundle_id, vb.sha256))
                    continue
                assert dept is not None
                row = rows[up.id]
                if first is None:
                    s.add(SeenBundle(bundle_id=bundle_id, upload_id=up.id, at=now))
                    seen[bundle_id] = up.id
                row.state = BundleState.ACCEPTED.value
                row.dept_code = dept_code
                row.bundle_id, row.kind = bundle_id, vb.header.kind.value
                row.sha256, row.updated_at = vb.sha256, now
                s.add(row)
                events.append(
                    EventSpec(
                        dept_code,
                        "bundle.accepted",
                        bundle_id,
                        {"upload": up.id, "kind": row.kind, "sha256": vb.sha256},
                    )
                )
                kept.append((row, dept.cert_pem))
            append_events(s, events, now=now)
            s.flush()
            accepted = [(row.model_copy(), pem) for row, pem in kept]
        return accepted, refused

    def _store_path(self, bundle_id: str) -> Path:
        return self.spool.store / f"{bundle_id}.bundle"

    def _receipts_and_routes(
        self, items: list[tuple[Upload, str | None]], now: dt.datetime
    ) -> dict[str, BundleState]:
        """Store, review, receipt and route accepted uploads, then record their states together.

        Review runs before the receipt, so a refusal is a signed rejection receipt. Every
        receipt of the batch is written (and its folder fsynced) before any route runs, so a
        long route (a query answer) does not hold back the other senders' receipts.
        """
        reviewed: list[tuple[Upload, str | None, AcceptedBundle]] = []
        refused: list[tuple[Upload, Refusal, Path]] = []
        touched: set[Path] = set()
        for up, cert_pem in items:
            assert up.bundle_id is not None
            incoming = self.spool.incoming_path(up.id)
            stored = self._store_path(up.bundle_id)
            if incoming.exists():
                incoming.replace(stored)
                touched.add(stored.parent)
            bundle = AcceptedBundle(
                upload_id=up.id,
                bundle_id=up.bundle_id,
                kind=up.kind or "",
                sender=up.dept_code,
                path=stored,
            )
            try:
                details = self.router.review(bundle)
            except Refusal as e:
                refused.append((up, e, stored))
                continue
            name = self._send_receipt(
                up, "accepted", None, None, now, cert_pem, sync_dir=False, details=details
            )
            if name is not None:
                touched.add(self.spool.outbox(up.dept_code))
            reviewed.append((up, name, bundle))
        # One directory fsync per folder for the whole batch, before any state says "sent".
        for folder in touched:
            fsync_dir(folder)
        results: dict[str, BundleState] = {}
        for up, refusal, stored in refused:
            results[up.id] = self._reject(
                up.id,
                up.dept_code,
                refusal.code,
                refusal.message,
                refusal.detail,
                stored,
                bundle_id=up.bundle_id,
                sha256=up.sha256,
            )
        finals = [(up, name, self.router.route(bundle)) for up, name, bundle in reviewed]
        if not finals:
            return results
        with self.node.session() as s:
            rows = {
                r.id: r
                for r in s.exec(
                    select(Upload).where(col(Upload.id).in_([u.id for u, _, _ in finals]))
                )
            }
            events = []
            for up, name, outcome in finals:
                row = rows[up.id]
                row.state = outcome.state.value
                row.receipt_name = name
                row.updated_at = now
                s.add(row)
                events.append(
                    EventSpec("node", f"bundle.{outcome.value}", up.bundle_id, {"upload": up.id})
                )
            append_events(s, events, now=now)
        return results | {up.id: outcome.state for up, _, outcome in finals}

    def _send_receipt(
        self,
        up: Upload,
        verdict: str,
        code: str | None,
        reason: str | None,
        now: dt.datetime,
        cert_pem: str | None = None,
        *,
        sync_dir: bool = True,
        details: dict[str, Any] | None = None,
    ) -> str | None:
        if cert_pem is None and up.dept_code:
            with self.node.session(write=False) as s:
                dept = s.get(Department, up.dept_code)
                cert_pem = dept.cert_pem if dept is not None else None
        if cert_pem is None:
            log.warning(
                "upload %s: no registered department %r to send a receipt to", up.id, up.dept_code
            )
            return None
        node_chain, node_key = self._node_identity()
        receipt = Receipt(
            upload_id=up.id,
            bundle_id=up.bundle_id,
            file_name=up.file_name,
            file_sha256=up.sha256 or "",
            size=up.size,
            verdict=verdict,
            reason_code=code,
            reason=reason,
            received_at=_rfc3339(as_utc(up.received_at)),
            decided_at=_rfc3339(now),
            node=self.node.config.code,
            details=details or {},
        )
        name, _ = write_receipt(
            self.spool.outbox(up.dept_code),
            receipt,
            recipient=x509.load_pem_x509_certificate(cert_pem.encode()),
            node_chain=node_chain,
            node_key=node_key,
            now=now,
            sync_dir=sync_dir,
        )
        return name

    def _reject(
        self,
        upload_id: str,
        dept_code: str,
        code: str,
        reason: str,
        detail: str | None,
        path: Path,
        *,
        bundle_id: str | None = None,
        sha256: str | None = None,
    ) -> BundleState:
        now = self.clock()
        log.warning(
            "upload %s from %s rejected: %s (%s)",
            upload_id,
            dept_code or "?",
            code,
            detail or reason,
        )
        quarantined = self.spool.quarantine / upload_id
        if path.exists():
            if sha256 is None:
                sha256 = _sha256_file(path)
            path.replace(quarantined)
            fsync_dir(quarantined.parent)
        elif sha256 is None and quarantined.exists():
            sha256 = _sha256_file(quarantined)
        with self.node.session() as s:
            up = s.get(Upload, upload_id)
            assert up is not None
            up.sha256 = sha256
            if bundle_id is not None:
                up.bundle_id = bundle_id
            snapshot = up.model_copy()
        name = self._send_receipt(snapshot, "rejected", code, reason, now)
        with self.node.session() as s:
            up = s.get(Upload, upload_id)
            assert up is not None
            up.state = BundleState.REJECTED.value
            up.reason_code, up.reason_detail = code, (detail or reason)[:2000]
            up.sha256, up.bundle_id, up.receipt_name, up.updated_at = (
                sha256,
                snapshot.bundle_id,
                name,
                now,
            )
            s.add(up)
            append_event(
                s,
                actor=dept_code or "?",
                action="bundle.rejected",
                subject=snapshot.bundle_id,
                now=now,
                detail={"upload": upload_id, "code": code},
            )
        return BundleState.REJECTED


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


def _check_sender(
    up: Upload,
    vb: VerifiedBundle,
    dept_code: str,
    dept: Department | None,
    nets: Sequence[str],
    node_fingerprint: str,
) -> None:
    """The node-level checks of a verified bundle; raises :class:`_Reject`."""
    sender = vb.sender
    if sender.code != dept_code:
        raise _Reject(
            "E_SIGNER",
            "bundle signed by another department",
            f"signer {sender.code} != uploader {dept_code}",
        )
    if dept is None or dept.state != DeptState.ACTIVE.value:
        raise _Reject(
            "E_SENDER",
            "sender is not an active registered department",
            f"department {sender.code} unknown or disabled",
        )
    if up.remote_addr is not None and not _in_networks(up.remote_addr, nets):
        raise _Reject(
            "E_ADDRESS",
            "upload came from an address not registered for the sender",
            f"{up.remote_addr} not in {list(nets)}",
        )
    if vb.header.recipient(node_fingerprint) is None:
        raise _Reject(
            "E_RECIPIENT",
            "bundle is not addressed to this node",
            "node certificate not among recipients",
        )


class _Reject(ExchangeError):
    """A node-level refusal of a bundle that is itself well-formed."""

    def __init__(self, code: str, reason: str, detail: str):
        super().__init__(f"bundle rejected: {reason}", code=code, detail=detail)
        self.reason = reason


def _in_networks(address: str, cidrs: Sequence[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(c) for c in cidrs)


def _rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()
