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
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cryptography import x509
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from exchange_server.audit import append_event
from exchange_server.node import Node, utcnow
from exchange_server.receipts import Receipt, write_receipt
from exchange_server.router import AcceptedBundle, Router, StoreRouter
from exchange_server.spool import Spool
from exchange_server.store.models import (
    BundleState,
    Department,
    DepartmentNetwork,
    DeptState,
    SeenBundle,
    Upload,
    as_utc,
)
from pki._fs import fsync_dir
from pki.bundle import BundleError, verify
from pki.errors import ExchangeError
from pki.keys import PrivateKey, fingerprint

__all__ = ["Ingest"]

log = logging.getLogger("exchange_server.ingest")


class Ingest:
    """Hand-over point between transports and the pipeline."""

    def __init__(
        self,
        node: Node,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
        router: Router | None = None,
        workers: int = 2,
    ):
        self.node = node
        self.clock = clock
        self.router: Router = router or StoreRouter()
        self.spool = Spool(node.config.path(node.config.spool))
        self.workers = workers
        self._wakeup = asyncio.Event()
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
        with self.node.session() as s:
            s.add(
                Upload(
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
            )
        log.info("upload %s from %s committed (%d bytes)", upload_id, dept, size)
        self.wake()

    def discard_partial(self, partial: Path) -> None:
        """Remove an aborted upload's temporary file (nothing of it is ever processed)."""
        partial.unlink(missing_ok=True)

    def wake(self) -> None:
        """Tell the pipeline there is work (callable from any thread)."""
        loop = self._loop
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(self._wakeup.set)
        else:
            self._wakeup.set()

    # --- the pipeline -----------------------------------------------------------------------

    def recover(self) -> None:
        """Bring the spool back to a consistent state after a crash (idempotent).

        Partial uploads are deleted; complete files in ``incoming/`` that have no upload
        record were never acknowledged, so they are quarantined, never processed.
        """
        # Partials an upload still writes are skipped: the SFTP front holds an flock on each
        # partial it writes, and another node process sharing the spool may be serving.
        from exchange_server.sftp import remove_orphan_partials

        remove_orphan_partials(self.spool)
        with self.node.session(write=False) as s:
            known = set(s.exec(select(Upload.id)).all())
        for f in self.spool.incoming.iterdir():
            if f.is_file() and not f.name.startswith(".") and f.name not in known:
                log.warning("unacknowledged upload %s quarantined at recovery", f.name)
                f.replace(self.spool.quarantine / f"orphan-{f.name}")

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
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="ingest") as pool:
            tasks: set[asyncio.Future[None]] = set()
            while True:
                self._wakeup.clear()
                for upload_id in await asyncio.to_thread(self.pending):
                    if upload_id in in_flight:
                        continue
                    in_flight.add(upload_id)
                    fut = self._loop.run_in_executor(pool, self.process_safely, upload_id)
                    tasks.add(fut)
                    fut.add_done_callback(self._finished(upload_id, in_flight, tasks))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout=1.0)

    def _finished(
        self, upload_id: str, in_flight: set[str], tasks: set[asyncio.Future[None]]
    ) -> Callable[[asyncio.Future[None]], None]:
        def done(fut: asyncio.Future[None]) -> None:
            in_flight.discard(upload_id)
            tasks.discard(fut)
            self._wakeup.set()

        return done

    def process_safely(self, upload_id: str) -> None:
        """:meth:`process`, logging instead of raising: one bad upload never stops the node."""
        try:
            self.process(upload_id)
        except Exception:
            log.exception("processing upload %s failed; it stays pending", upload_id)

    def process(self, upload_id: str) -> BundleState:
        """Take one upload as far as it can go; idempotent, so safe to repeat after a crash.

        The common path costs one read and two short write transactions: acceptance (with the
        replay guard) must commit before the receipt is written, and the final state after it.
        """
        with self.node.session(write=False) as s:
            up = s.get(Upload, upload_id)
            if up is None:
                raise LookupError(upload_id)
            snap = up.model_copy()
        state = BundleState(snap.state)
        cert_pem: str | None = None
        if state in (BundleState.RECEIVED, BundleState.VERIFIED):
            state, snap, cert_pem = self._verify_and_accept(snap)
        if state is BundleState.ACCEPTED:
            state = self._receipt_and_route(snap, cert_pem)
        return state

    def _node_identity(self) -> tuple[list[x509.Certificate], PrivateKey]:
        if self._identity is None:
            self._identity = self.node.identity()
        return self._identity

    def _verify_and_accept(self, up: Upload) -> tuple[BundleState, Upload, str | None]:
        now = self.clock()
        path = self.spool.incoming_path(up.id)
        dept_code = up.dept_code
        try:
            vb = verify(path, self.node.trust(), now=now)
        except BundleError as e:
            return self._reject(up.id, dept_code, e.code, e.message, e.detail, path), up, None
        sender = vb.sender
        bundle_id, kind, sha256 = str(vb.header.bundle_id), vb.header.kind.value, vb.sha256
        if up.source == "drop":
            dept_code = sender.code  # no login to compare with: the signer is the sender
        node_chain, _ = self._node_identity()
        # Checks against the registry and acceptance share one transaction, so a department
        # disabled or re-addressed meanwhile is seen, and the seen_bundle primary key makes a
        # second acceptance of the same bundle id impossible, across node processes too.
        try:
            with self.node.session() as s:
                dept = s.get(Department, sender.code)
                nets = s.exec(
                    select(DepartmentNetwork.cidr).where(DepartmentNetwork.dept_code == sender.code)
                ).all()
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
                if vb.header.recipient(fingerprint(node_chain[0])) is None:
                    raise _Reject(
                        "E_RECIPIENT",
                        "bundle is not addressed to this node",
                        "node certificate not among recipients",
                    )
                cert_pem = dept.cert_pem
                row = s.get(Upload, up.id)
                assert row is not None
                s.add(SeenBundle(bundle_id=bundle_id, upload_id=up.id, at=now))
                row.state = BundleState.ACCEPTED.value
                row.dept_code = dept_code
                row.bundle_id, row.kind, row.sha256, row.updated_at = bundle_id, kind, sha256, now
                s.add(row)
                append_event(
                    s,
                    actor=dept_code,
                    action="bundle.accepted",
                    subject=bundle_id,
                    now=now,
                    detail={"upload": up.id, "kind": kind, "sha256": sha256},
                )
                s.flush()
                accepted = row.model_copy()
        except _Reject as e:
            state = self._reject(
                up.id,
                dept_code,
                e.code,
                e.reason,
                e.detail,
                path,
                bundle_id=bundle_id,
                sha256=sha256,
            )
            return state, up, None
        except IntegrityError:
            with self.node.session(write=False) as s:
                seen = s.get(SeenBundle, bundle_id)
                row = s.get(Upload, up.id)
                assert row is not None
                snap = row.model_copy()
            if seen is not None and seen.upload_id == up.id:
                return BundleState.ACCEPTED, snap, None  # accepted before a crash
            state = self._reject(
                up.id,
                dept_code,
                "E_REPLAY",
                "bundle was already received",
                f"bundle {bundle_id} first seen in upload {seen.upload_id if seen else '?'}",
                path,
                bundle_id=bundle_id,
                sha256=sha256,
            )
            return state, snap, None
        return BundleState.ACCEPTED, accepted, cert_pem

    def _store_path(self, bundle_id: str) -> Path:
        return self.spool.store / f"{bundle_id}.bundle"

    def _receipt_and_route(self, up: Upload, cert_pem: str | None) -> BundleState:
        now = self.clock()
        assert up.bundle_id is not None
        incoming = self.spool.incoming_path(up.id)
        stored = self._store_path(up.bundle_id)
        if incoming.exists():
            incoming.replace(stored)
            fsync_dir(stored.parent)
        name = self._send_receipt(up, "accepted", None, None, now, cert_pem)
        outcome = self.router.route(
            AcceptedBundle(
                upload_id=up.id,
                bundle_id=up.bundle_id,
                kind=up.kind or "",
                sender=up.dept_code,
                path=stored,
            )
        )
        with self.node.session() as s:
            row = s.get(Upload, up.id)
            assert row is not None
            row.state = outcome.state.value
            row.receipt_name = name
            row.updated_at = now
            s.add(row)
            append_event(
                s,
                actor="node",
                action=f"bundle.{outcome.value}",
                subject=up.bundle_id,
                now=now,
                detail={"upload": up.id},
            )
        return outcome.state

    def _send_receipt(
        self,
        up: Upload,
        verdict: str,
        code: str | None,
        reason: str | None,
        now: dt.datetime,
        cert_pem: str | None = None,
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
        )
        name, _ = write_receipt(
            self.spool.outbox(up.dept_code),
            receipt,
            recipient=x509.load_pem_x509_certificate(cert_pem.encode()),
            node_chain=node_chain,
            node_key=node_key,
            now=now,
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
