"""The runner: gathers facts, asks :func:`~exchange_server.pipeline.decisions.decide`, applies.

For each pending upload the runner verifies the bundle (:func:`pki.bundle.verify`), reads the
registry and the replay guard, runs the router's review and routing, and turns each outcome
into an event for :func:`decide`; it then applies the returned transition: the state and the
audit events in the store, the files in the spool, the receipt in the outbox. It decides
nothing itself.

Uploads are processed in batches that share transactions (one read, one that checks the
senders and accepts, one that records the final states), with the same outcome as processing
them one by one in order. Acceptance commits before any receipt is written, and the final
state only after it, so a crash anywhere leaves each upload resumable from its recorded state;
receipts and results are written exactly once (:mod:`exchange_server.outbox.writer`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import col, select

from exchange_common.fs import fsync_dir, sha256_file
from exchange_server.node import Node, utcnow
from exchange_server.outbox.receipts import receipt_name
from exchange_server.outbox.writer import Outbox
from exchange_server.pipeline.decisions import (
    BundleFacts,
    BundleInvalid,
    BundleVerified,
    Event,
    RecordSeen,
    RegistrySnapshot,
    ReviewPassed,
    ReviewRefused,
    Routed,
    Transition,
    UploadFacts,
    decide,
)
from exchange_server.pipeline.recording import (
    registry_snapshot,
    send_action_receipt,
    transition_events,
)
from exchange_server.pipeline.recovery import OPEN_STATES, pending_uploads, recover_spool
from exchange_server.pipeline.router import AcceptedBundle, Refusal, RouteOutcome, Router
from exchange_server.pipeline.stages import StageTimes
from exchange_server.spool import Spool
from exchange_server.store.audit import EventSpec, append_events
from exchange_server.store.models import (
    BundleState,
    SeenBundle,
    Upload,
    as_utc,
)
from pki.bundle import BundleError, VerifiedBundle, signer_for_receipt, verify
from pki.keys import fingerprint

__all__ = ["OPEN_STATES", "RETRY_SECONDS", "Runner", "recover_spool", "transition_events"]

log = logging.getLogger(__name__)

#: Refusals for the state of the node's CRL, not for the sender: its receipt finds the signer.
_CRL_STATE = frozenset({"E_CRL_STALE", "E_CRL_MISSING", "E_CRL_INVALID"})

#: Why an upload whose rejection a crash interrupted is rejected on its redo (its sender may
#: already hold the first rejection receipt, which is kept: exactly once).
_STOPPED_REJECTING = "the node stopped while rejecting this bundle; its receipt says why"

#: Seconds before uploads whose processing failed (a node-side error) are tried again.
RETRY_SECONDS = 5.0


@dataclass
class _Item:
    """One upload on its way through a batch: its record and its facts so far."""

    row: Upload

    @property
    def facts(self) -> UploadFacts:
        return UploadFacts.of(self.row)


class Runner:
    """Runs the pipeline over a node's spool and store, with ``router`` for review and routing.

    There is no default router: a node reviews every bundle against its catalog
    (:class:`~exchange_server.pipeline.workflow.Workflow`), and tests pass their own.
    """

    def __init__(
        self,
        node: Node,
        router: Router,
        *,
        spool: Spool | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
        workers: int = 2,
        batch_size: int = 32,
    ) -> None:
        self.node = node
        self.router = router
        self.spool = spool or Spool(node.config.path(node.config.spool))
        self.outbox = Outbox(node, self.spool)
        self.clock = clock
        self.workers = workers
        self.batch_size = batch_size
        self._wakeup = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Each upload's time per stage, logged when its batch is done (pipeline.stages).
        self.stages = StageTimes()

    # --- scheduling --------------------------------------------------------------------------

    def wake(self) -> None:
        """Tell the runner there is work (callable from any thread)."""
        loop = self._loop
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(self._wakeup.set)
        else:
            self._wakeup.set()

    def recover(self) -> None:
        """:func:`recover_spool` for this runner's node and spool."""
        recover_spool(self.node, self.spool)

    def pending(self) -> list[str]:
        """Upload ids not yet in a final state, oldest first."""
        return pending_uploads(self.node)

    async def run(self, *, recover: bool = True) -> None:
        """Process uploads until cancelled: recovery first, then whatever arrives.

        ``recover=False`` when the caller already ran :meth:`recover` before any transport
        started (the server does, so recovery never races a live upload's commit).
        """
        self._loop = loop = asyncio.get_running_loop()
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
                    cooldown.update(dict.fromkeys(ids, time.monotonic() + RETRY_SECONDS))
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
                        fut = loop.run_in_executor(pool, self.process_batch_safely, take)
                        fut.add_done_callback(finished(take))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout=1.0)

    def process_batch_safely(self, upload_ids: list[str]) -> bool:
        """:meth:`process_batch`, logging instead of raising: one bad upload never stops the
        node, nor holds up the others. When a batch fails, its uploads are processed again one
        by one (processing is idempotent), so only the one that fails stays pending; each of
        its failures counts as an attempt (:meth:`_attempt_failed`). Returns False if any
        upload failed (it is retried after :data:`RETRY_SECONDS`)."""
        try:
            self.process_batch(upload_ids)
            return True
        except Exception as e:
            if len(upload_ids) == 1:
                log.exception("processing upload %s failed", upload_ids[0])
                if not isinstance(e, OperationalError):  # the store away is not the bundle's fault
                    with contextlib.suppress(Exception):  # nor can it be counted without a store
                        self._attempt_failed(upload_ids[0], e)
                return False
            log.exception("processing uploads %s failed; trying them one by one", upload_ids)
        ok = True
        for u in upload_ids:
            ok = self.process_batch_safely([u]) and ok
        return ok

    def _attempt_failed(self, upload_id: str, error: Exception) -> None:
        """Count one failed attempt at ``upload_id``; at ``limits.max_attempts`` give up on it.
        Before its receipt: a signed rejection ``E_NODE_FAULT``, the bundle quarantined and its
        id released (the sender may resend it). After its receipt (routing fails): it leaves
        the queue, logged and audited ``bundle.held``, for the operator."""
        limit = self.node.config.limits.max_attempts
        with self.node.session() as s:
            row = s.get(Upload, upload_id)
            if row is None or BundleState(row.state) not in OPEN_STATES:
                return
            row.attempts += 1
            s.add(row)
            snapshot = row.model_copy()
        if snapshot.attempts < limit:
            return
        now = self.clock()
        cause = type(error).__name__  # its message may quote data: the log has the traceback
        # the receipt is written before the state that records it: look in the outbox
        sent = snapshot.receipt_name is not None or (
            (self.spool.outbox(snapshot.dept_code) / receipt_name(upload_id)).exists()
        )
        if sent:
            log.error("upload %s held after %d failed attempts (%s)", upload_id, limit, cause)
            held = EventSpec("node", "bundle.held", snapshot.bundle_id, {"upload": upload_id})
            with self.node.session() as s:
                append_events(s, [held], now=now)
            return
        item = _Item(snapshot)
        why = f"the node could not process this bundle ({limit} attempts failed: {cause})"
        event: Event = (
            BundleInvalid("E_NODE_FAULT", why, cause)
            if snapshot.state == BundleState.RECEIVED.value
            else ReviewRefused("E_NODE_FAULT", why, cause)
        )
        self._reject(item, self._decide(item, event, now), now)
        if snapshot.bundle_id is not None:
            with self.node.session() as s:
                seen = s.get(SeenBundle, snapshot.bundle_id)
                if seen is not None and seen.upload_id == upload_id:
                    s.delete(seen)  # released: the same bundle may be sent again

    def process(self, upload_id: str) -> BundleState:
        """Take one upload as far as it can go; idempotent, so safe to repeat after a crash."""
        return self.process_batch([upload_id])[upload_id]

    # --- one batch ---------------------------------------------------------------------------

    def process_batch(self, upload_ids: Sequence[str]) -> dict[str, BundleState]:
        """Take several uploads as far as they can go, sharing transactions between them.

        The outcome is the same as processing them one by one in order (a bundle id repeated
        within the batch is a replay). Raises LookupError for an unknown upload id. Logs each
        upload's stage timings (:mod:`~exchange_server.pipeline.stages`) when done.
        """
        try:
            results = self._process_batch(upload_ids)
        except BaseException:
            for u in upload_ids:
                self.stages.report(u, "failed")
            raise
        for u, state in results.items():
            self.stages.report(u, state.value)
        return results

    def _process_batch(self, upload_ids: Sequence[str]) -> dict[str, BundleState]:
        with self.node.session(write=False) as s:
            rows = s.exec(select(Upload).where(col(Upload.id).in_(list(upload_ids)))).all()
            items = {r.id: _Item(r.model_copy()) for r in rows}
        missing = [u for u in upload_ids if u not in items]
        if missing:
            raise LookupError(missing[0])
        now = self.clock()
        results = {u: BundleState(items[u].row.state) for u in upload_ids}
        trust = self.node.trust()
        node_fp = fingerprint(self.node.chain()[0])
        verified: list[tuple[_Item, BundleFacts]] = []
        checked: dict[str, VerifiedBundle] = {}
        invalid: list[tuple[_Item, Transition]] = []
        for u in upload_ids:
            item = items[u]
            self.stages.queued(u, as_utc(item.row.received_at))
            if results[u] is not BundleState.RECEIVED:
                continue
            source = self._or_quarantined(self.spool.incoming_path(u), u)
            try:
                with self.stages.timed([u], "verify"):
                    vb = verify(source, trust, now=now, limits=self.node.config.limits)
            except BundleError as e:
                event = BundleInvalid(e.code, e.message, e.detail)
                if not item.row.dept_code and e.code in _CRL_STATE:
                    # no account to answer (the drop folder): the verified signer learns why
                    signer = signer_for_receipt(source, trust, now=now)
                    item = _Item(item.row.model_copy(update={"dept_code": signer or ""}))
                invalid.append((item, self._decide(item, event, now)))
                continue
            if source != self.spool.incoming_path(u):
                # Its rejection was under way when the node stopped (the file already in the
                # quarantine, its receipt perhaps sent): it is never admitted now, even if it
                # would pass today (a CRL renewed meanwhile); the receipt sent is kept.
                event = BundleInvalid("E_NODE_FAULT", _STOPPED_REJECTING)
                invalid.append((item, self._decide(item, event, now)))
                continue
            facts = BundleFacts(
                bundle_id=str(vb.header.bundle_id),
                kind=vb.header.kind.value,
                signer=vb.sender.code,
                sha256=vb.sha256,
                addressed_to_node=vb.header.recipient(node_fp) is not None,
            )
            verified.append((item, facts))
            checked[u] = vb
        results |= self._reject_all(invalid, now)
        to_review = [items[u] for u in upload_ids if results[u] is BundleState.ACCEPTED]
        if verified:
            try:
                with self.stages.timed([i.row.id for i, _ in verified], "admit"):
                    accepted, refused = self._admit(verified, now)
            except IntegrityError:
                # Another node process accepted one of these bundle ids meanwhile: redo them
                # one by one, where the replay guard names the loser.
                if len(verified) == 1:
                    raise
                for item, _ in verified:
                    results[item.row.id] = self.process(item.row.id)
                accepted, refused = [], []
            results |= self._reject_all(refused, now)
            to_review += accepted
        return results | self._review_and_route(to_review, now, checked)

    def _decide(self, item: _Item, event: Event, now: dt.datetime) -> Transition:
        return decide(item.facts, event, RegistrySnapshot(), now)

    def _admit(
        self, verified: list[tuple[_Item, BundleFacts]], now: dt.datetime
    ) -> tuple[list[_Item], list[tuple[_Item, Transition]]]:
        """Decide the admission of verified bundles and record it, in one transaction.

        The registry is read in the transaction that records the decision, so a department
        disabled or re-addressed meanwhile is seen, and the seen_bundle primary key makes a
        second acceptance of one bundle id impossible, across node processes too.
        """
        accepted: list[_Item] = []
        refused: list[tuple[_Item, Transition]] = []
        with self.node.session() as s:
            snapshot = registry_snapshot(
                s,
                {b.signer for _, b in verified},
                [b.bundle_id for _, b in verified],
            )
            seen = dict(snapshot.seen)
            rows = {
                r.id: r
                for r in s.exec(
                    select(Upload).where(col(Upload.id).in_([i.row.id for i, _ in verified]))
                )
            }
            events: list[EventSpec] = []
            for item, b in verified:
                reg = RegistrySnapshot(snapshot.departments, seen)
                t = decide(item.facts, BundleVerified(b), reg, now)
                if t.state is not BundleState.ACCEPTED:
                    refused.append((item, t))
                    continue
                for action in t.actions:
                    if isinstance(action, RecordSeen):
                        s.add(SeenBundle(bundle_id=action.bundle_id, upload_id=item.row.id, at=now))
                        seen[action.bundle_id] = item.row.id
                row = rows[item.row.id]
                row.state, row.dept_code = t.state.value, t.dept_code
                row.bundle_id, row.kind = b.bundle_id, b.kind
                row.sha256, row.updated_at = b.sha256, now
                s.add(row)
                events += transition_events(t)
                accepted.append(item)
            append_events(s, events, now=now)
            s.flush()
            for item in accepted:
                item.row = rows[item.row.id].model_copy()
        return accepted, refused

    def _store_path(self, bundle_id: str) -> Path:
        return self.spool.store / f"{bundle_id}.bundle"

    def _stored(self, row: Upload) -> Path:
        """The accepted upload's bundle in ``store/`` (moved there from ``incoming/`` once),
        or in the quarantine when a crash came while it was being rejected."""
        assert row.bundle_id is not None
        stored = self._store_path(row.bundle_id)
        incoming = self.spool.incoming_path(row.id)
        if incoming.exists():
            incoming.replace(stored)
        return self._or_quarantined(stored, row.id)

    def _or_quarantined(self, path: Path, upload_id: str) -> Path:
        """``path``, or the upload's file in the quarantine when only that one exists: a crash
        came while the upload was being rejected (its redo never admits it)."""
        quarantined = self.spool.quarantine / upload_id
        return quarantined if not path.exists() and quarantined.exists() else path

    def _review_and_route(
        self, items: list[_Item], now: dt.datetime, checked: dict[str, VerifiedBundle]
    ) -> dict[str, BundleState]:
        """Review, receipt and route accepted uploads, then record their states together.

        Review runs before the receipt, so a refusal is a signed rejection receipt. Every
        receipt of the batch is written (and its folder fsynced) before any route runs, so a
        long route (a query answer) does not hold back the other senders' receipts.
        """
        reviewed: list[tuple[_Item, str | None, AcceptedBundle]] = []
        refused: list[tuple[_Item, Transition]] = []
        touched: set[Path] = set()
        for item in items:
            row = item.row
            bundle = AcceptedBundle(
                upload_id=row.id,
                bundle_id=row.bundle_id or "",
                kind=row.kind or "",
                sender=row.dept_code,
                path=self._stored(row),
                received_at=as_utc(row.received_at),
                verified=checked.get(row.id),
            )
            touched.add(bundle.path.parent)
            event: Event
            if bundle.path.parent == self.spool.quarantine:
                # refused at review when the node stopped: never reviewed again (see above)
                refused.append(
                    (
                        item,
                        self._decide(item, ReviewRefused("E_NODE_FAULT", _STOPPED_REJECTING), now),
                    )
                )
                continue
            try:
                with self.stages.timed([row.id], "review"):
                    event = ReviewPassed(self.router.review(bundle))
            except Refusal as e:
                event = ReviewRefused(e.code, e.message, e.detail)
            t = self._decide(item, event, now)
            if t.state is BundleState.REJECTED:
                refused.append((item, t))
                continue
            with self.stages.timed([row.id], "receipt"):
                name = send_action_receipt(self.outbox, item.row, t.receipt, now, sync_dir=False)
            if name is not None:
                touched.add(self.spool.outbox(row.dept_code))
            reviewed.append((item, name, bundle))
        # One directory fsync per folder for the whole batch, before any state says "sent".
        with self.stages.timed([i.row.id for i, _, _ in reviewed], "receipt"):
            for folder in touched:
                fsync_dir(folder)
        results = self._reject_all(refused, now)
        finals = []
        for item, name, b in reviewed:
            with self.stages.timed([item.row.id], "route"):
                waiting = self.router.route(b) is RouteOutcome.WAITING
            finals.append((item, name, self._decide(item, Routed(waiting), now)))
        if not finals:
            return results
        with (
            self.stages.timed([i.row.id for i, _, _ in finals], "record"),
            self.node.session() as s,
        ):
            rows = {
                r.id: r
                for r in s.exec(
                    select(Upload).where(col(Upload.id).in_([i.row.id for i, _, _ in finals]))
                )
            }
            events: list[EventSpec] = []
            for item, name, t in finals:
                row = rows[item.row.id]
                row.state, row.receipt_name, row.updated_at = t.state.value, name, now
                s.add(row)
                events += transition_events(t)
            append_events(s, events, now=now)
        self.router.settle()
        return results | {item.row.id: t.state for item, _, t in finals}

    # --- applying transitions ----------------------------------------------------------------

    def _reject(self, item: _Item, t: Transition, now: dt.datetime) -> BundleState:
        """Apply one transition to ``rejected`` (:meth:`_reject_all`)."""
        return self._reject_all([(item, t)], now)[item.row.id]

    def _reject_all(
        self, refused: Sequence[tuple[_Item, Transition]], now: dt.datetime
    ) -> dict[str, BundleState]:
        """Apply transitions to ``rejected``: quarantine, rejection receipt, record. The
        receipts are written first (one folder fsync per folder), then every state and audit
        event in one transaction: a crash in between sends no second receipt (exactly once,
        :mod:`~exchange_server.outbox.writer`) and leaves the uploads to redo."""
        if not refused:
            return {}
        ids = [item.row.id for item, _ in refused]
        rows: list[tuple[Upload, str | None, Transition]] = []
        touched: set[Path] = set()
        with self.stages.timed(ids, "receipt"):
            for item, t in refused:
                row = item.row
                log.warning(
                    "upload %s from %s rejected: %s (%s)",
                    row.id,
                    t.dept_code or "?",
                    t.code,
                    t.detail,
                )
                quarantined = self.spool.quarantine / row.id
                sources = [self.spool.incoming_path(row.id)]
                if row.bundle_id is not None:
                    sources.append(self._store_path(row.bundle_id))
                for path in sources:
                    if path.exists():
                        path.replace(quarantined)
                        touched.add(quarantined.parent)
                        break
                row = row.model_copy()
                if t.bundle is not None:
                    row.bundle_id, row.sha256 = t.bundle.bundle_id, t.bundle.sha256
                if row.sha256 is None and quarantined.exists():
                    row.sha256 = sha256_file(quarantined)
                name = send_action_receipt(self.outbox, row, t.receipt, now, sync_dir=False)
                if name is not None and t.receipt is not None:  # to its signer (drop folder)
                    touched.add(self.spool.outbox(t.receipt.dept_code))
                rows.append((row, name, t))
            for folder in touched:
                fsync_dir(folder)
        with self.stages.timed(ids, "record"), self.node.session() as s:
            stored = {r.id: r for r in s.exec(select(Upload).where(col(Upload.id).in_(ids)))}
            events: list[EventSpec] = []
            for row, name, t in rows:
                up = stored[row.id]
                up.state = t.state.value
                up.reason_code, up.reason_detail = t.code, (t.detail or "")[:2000]
                up.sha256, up.bundle_id, up.receipt_name = row.sha256, row.bundle_id, name
                up.updated_at = now
                s.add(up)
                events += transition_events(t)
            append_events(s, events, now=now)
        return {row.id: t.state for row, _, t in rows}
