"""Audit trail rates: append, checkpoint, verify and prove, against raw peers in the same run.

    .venv/bin/python bench/audit.py                       # about 22,000 events on SQLite
    .venv/bin/python bench/audit.py --events 100000 --database postgresql+psycopg://@127.0.0.1/test

What it measures, on a fresh store (a temporary SQLite file unless ``--database``):

- **append**: events/s through :func:`exchange_server.store.audit.append_events`, one event per
  transaction (how the SFTP front writes logins) and ten per transaction (a pipeline batch),
  beside the **peer**: raw INSERTs of the same rows in the same transactions, no chain;
- **checkpoint**: the time to sign a checkpoint over the events added since the last one, its
  note's size and the right edge it keeps;
- **verify**: events/s of :func:`exchange_server.store.checkpoints.verify_trail` over the whole
  trail, beside the **peer**: SHA-256 of the same leaf bytes alone (the work no verifier avoids);
- **prove**: building the tree and one extract's proofs.

It prints the append capacity as a multiple of the event rate a loaded node produces
(``--load-events-per-second``, default 170: 56 uploads/s from ``bench/sftp_upload.py`` at 50
clients, about 3 events each). Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import tempfile
import time
from pathlib import Path

from sqlalchemy import text
from sqlmodel import Session, col, select

from exchange_server.store.audit import EventSpec, append_events, event_leaf_hash
from exchange_server.store.checkpoints import make_checkpoint, verify_trail
from exchange_server.store.db import open_store
from exchange_server.store.models import AuditEvent
from pki.audit_extract import event_leaf
from pki.keys import generate_private_key
from pki.merkle import MerkleTree

ORIGIN = "exchange-node/BENCH/audit"


def _spec(i: int) -> EventSpec:
    return EventSpec(
        "node",
        "bundle.accepted",
        f"{i:08d}-0000-4000-8000-000000000000",
        {"upload": f"u{i}", "kind": "data", "sender": "MZ330100", "size": 1234 + i},
    )


def _append(engine: object, n: int, per_tx: int) -> float:
    start = time.perf_counter()
    now = dt.datetime.now(dt.UTC)
    for k in range(0, n, per_tx):
        with Session(engine) as s:  # type: ignore[arg-type]
            append_events(s, [_spec(k + j) for j in range(per_tx)], now=now)
            s.commit()
    return n / (time.perf_counter() - start)


def _raw(engine: object, n: int, per_tx: int) -> float:
    """The peer: the same rows inserted as they are, no chain, no lookup of the head."""
    start = time.perf_counter()
    now = dt.datetime.now(dt.UTC)
    with Session(engine) as s:  # type: ignore[arg-type]
        s.execute(
            text("CREATE TABLE IF NOT EXISTS raw_event AS SELECT * FROM audit_event WHERE 0=1")
        )
        s.commit()
    for k in range(0, n, per_tx):
        with Session(engine) as s:  # type: ignore[arg-type]
            s.execute(
                text(
                    "INSERT INTO raw_event (seq, at, actor, action, subject, detail, prev_hash, "
                    "hash) VALUES (:seq, :at, :actor, :action, :subject, :detail, :p, :h)"
                ),
                [
                    {
                        "seq": 10_000_000 + k + j,
                        "at": now,
                        "actor": "node",
                        "action": "bundle.accepted",
                        "subject": f"{k + j:08d}",
                        "detail": json.dumps(_spec(k + j).detail),
                        "p": "0" * 64,
                        "h": "0" * 64,
                    }
                    for j in range(per_tx)
                ],
            )
            s.commit()
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--events",
        type=int,
        default=40_000,
        help="half are appended ten per transaction, a twentieth one per transaction",
    )
    parser.add_argument("--database", default="", help="SQLAlchemy URL (default: temp SQLite)")
    parser.add_argument("--load-events-per-second", type=float, default=170.0)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-audit-"))
    url = args.database or f"sqlite:///{tmp / 'state.db'}"
    engine = open_store(url)
    if args.database:
        with Session(engine) as s:
            s.execute(text("DELETE FROM audit_person"))
            s.execute(text("DELETE FROM audit_checkpoint"))
            s.execute(text("DELETE FROM audit_event"))
            s.execute(text("DROP TABLE IF EXISTS raw_event"))
            s.commit()
    n = args.events
    key = generate_private_key()
    half = n // 2 - (n // 2) % 10
    rows = []
    one = _append(engine, half // 10, 1)
    raw_one = _raw(engine, half // 10, 1)
    rows.append(("append, 1 per transaction", one, raw_one))
    ten = _append(engine, half, 10)
    raw_ten = _raw(engine, half, 10)
    rows.append(("append, 10 per transaction", ten, raw_ten))
    total = half // 10 + half

    with Session(engine, expire_on_commit=False) as s:
        t = time.perf_counter()
        row = make_checkpoint(s, key, ORIGIN, now=dt.datetime.now(dt.UTC))
        s.commit()
        first_cp = time.perf_counter() - t
    assert row is not None
    _append(engine, 1000, 10)
    with Session(engine, expire_on_commit=False) as s:
        t = time.perf_counter()
        row = make_checkpoint(s, key, ORIGIN, now=dt.datetime.now(dt.UTC))
        s.commit()
        next_cp = time.perf_counter() - t
    assert row is not None
    total += 1000

    with Session(engine) as s:
        t = time.perf_counter()
        report = verify_trail(s, key.public_key(), ORIGIN)
        verify = report.events / (time.perf_counter() - t)
        events = s.exec(select(AuditEvent).order_by(col(AuditEvent.seq))).all()
        t = time.perf_counter()
        leaves = [
            event_leaf(e.seq, e.at.isoformat(), e.actor, e.action, e.subject, e.detail)
            for e in events
        ]
        for leaf in leaves:
            hashlib.sha256(b"\x00" + leaf).digest()
        peer_verify = len(leaves) / (time.perf_counter() - t)
        t = time.perf_counter()
        tree = MerkleTree([event_leaf_hash(e) for e in events])
        proofs = [tree.inclusion_proof(i) for i in range(0, tree.size, max(1, tree.size // 1000))]
        prove = time.perf_counter() - t
    rows.append(("verify the whole trail (chain, tree, checkpoints)", verify, peer_verify))
    print(f"audit trail bench: {total} events, {url.split(':')[0]}")
    print(f"{'operation':<52} {'events/s':>10} {'peer/s':>10} {'ratio':>6}")
    for name, ours, peer in rows:
        print(f"{name:<52} {ours:>10,.0f} {peer:>10,.0f} {ours / peer:>6.2f}")
    print("peer: raw INSERT of the same rows (append); SHA-256 of the leaves alone (verify)")
    print(
        f"checkpoint over {half // 10 + half} events: {first_cp * 1000:.0f} ms; "
        f"the next over 1,000 new events: {next_cp * 1000:.0f} ms"
    )
    print(
        f"checkpoint note: {len(row.note.encode())} bytes; right edge kept: "
        f"{len(json.loads(row.frontier))} hashes"
    )
    print(
        f"tree of {tree.size} events and {len(proofs)} inclusion proofs: {prove * 1000:.0f} ms "
        f"({sum(len(p) for p in proofs) / len(proofs):.1f} hashes per proof)"
    )
    need = args.load_events_per_second
    print(
        f"append capacity vs a loaded node ({need:.0f} events/s): "
        f"{min(one, ten) / need:.1f}x at the slower batching"
    )
    engine.dispose()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
