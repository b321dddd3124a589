"""Benchmark: the pipeline under load on the real path (issue "The pipeline under load").

A node with the example catalog; 人社 (RS330100) first pushes a full 社保 dataset (RS-SI-01,
``--base-rows`` records over ``--population`` persons), then, all at once over ``--clients``
SFTP sessions:

- 民政 (MZ330100) sends ``--queries`` queries of 10–100 persons each (persons of the same
  population, so most have records), each answered by the node's DuckDB engine;
- 人社 sends ``--increments`` small data increments (``--increment-rows`` records each) and
  ``--large`` large ones (``--large-rows`` records each), each ingested through DuckDB.

Prints per kind: bundles/s, upload-to-receipt p50/p99, for queries also upload-to-result
(the signed result bundle in 民政's outbox) p50/p99, the node's peak memory, and each pipeline
stage's p50/p99 from the node's log (``bench/sftp_upload.py`` prints the same table for small
refused bundles). The issue's goals on 2 cores are printed beside the figures.

Not a test: nothing is asserted. Everything listens on 127.0.0.1 only and stops by itself.

    .venv/bin/python bench/load.py                    # 50 clients, 300 queries, 300 increments
    .venv/bin/python bench/load.py --clients 10 --queries 50 --increments 50 --large 1
"""

# SQL is assembled from the synthetic generator's SQL and integers only (no outside text).
# ruff: noqa: S608

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sftp_upload import node_pids, peak_rss, print_stages

from exchange_common.catalog import load_catalog
from exchange_server.data.synthetic import dataset_sql, persons_sql
from exchange_server.pipeline.queries import result_name
from tests.integration.node_harness import EXAMPLE_CATALOG, DeptSpec, NodeHarness

MZ, RS = "MZ330100", "RS330100"
RESOURCE = "RS-SI-01"


@dataclass
class Job:
    """One bundle to push: who sends it, what kind, the sealed file."""

    kind: str  # query | increment | large
    dept: str
    path: Path
    bundle_id: str
    start: float = 0.0


def csv_of(sql: str, path: Path) -> bytes:
    """Run ``sql`` in DuckDB and return it as CSV text with a header."""
    with duckdb.connect() as con:
        con.execute(f"COPY ({sql}) TO '{path}' (HEADER, DELIMITER ',')")
    return path.read_bytes()


def seal_job(h: NodeHarness, work: Path, kind: str, body: bytes, n: int) -> Job:
    """Seal one push or query for the node; returns its job."""
    bid = uuid.uuid4()
    out = work / "bundles" / f"{kind}-{n:05d}.bundle"
    if kind == "query":
        fields = {
            "business_type": "低保",
            "purpose": "最低生活保障家庭经济状况核对",
            "persons": body.count(b"\n") - 1,
            "resources": [RESOURCE],
        }
        h.seal(MZ, body, out, kind="query", member="persons.csv", bundle_id=bid, fields=fields)
        return Job(kind, MZ, out, str(bid))
    fields = {"resource": RESOURCE, "mode": "full" if kind == "base" else "increment"}
    h.seal(RS, body, out, kind="data", member="data.csv", bundle_id=bid, fields=fields)
    return Job(kind, RS, out, str(bid))


def make_jobs(h: NodeHarness, args: argparse.Namespace, work: Path) -> tuple[Job, list[Job]]:
    """The base push and the mixed jobs, sealed ahead of the run (not timed)."""
    (work / "bundles").mkdir()
    resource = load_catalog(EXAMPLE_CATALOG).resource(RESOURCE)
    assert resource is not None
    tmp = work / "t.csv"

    def data(rows: int, seed: int) -> bytes:
        return csv_of(dataset_sql(resource, rows, population=args.population, seed=seed), tmp)

    base = seal_job(h, work, "base", data(args.base_rows, 0), 0)
    rng = random.Random(7)
    jobs = []
    for i in range(args.queries):
        count, start = rng.randint(10, 100), rng.randrange(args.population - 100)
        sql = (
            f"SELECT id_number, name, household_id, 'SQ-' || row_number() OVER () "
            f'AS "authorization" FROM ({persons_sql(count, start=start)})'
        )
        jobs.append(seal_job(h, work, "query", csv_of(sql, tmp), i))
    for i in range(args.increments):
        jobs.append(seal_job(h, work, "increment", data(args.increment_rows, 1000 + i), i))
    for i in range(args.large):
        jobs.append(seal_job(h, work, "large", data(args.large_rows, 5000 + i), i))
    rng.shuffle(jobs)
    return base, jobs


async def push_all(h: NodeHarness, jobs: list[Job], clients: int) -> None:
    """Upload ``jobs`` over ``clients`` sessions, each session one department's."""
    by_dept: dict[str, list[Job]] = {}
    for job in jobs:
        by_dept.setdefault(job.dept, []).append(job)

    async def session(dept: str, mine: list[Job]) -> None:
        async with h.asyncssh_connect(dept) as conn, conn.start_sftp_client() as sftp:
            for job in mine:
                job.start = time.time()
                await sftp.put(str(job.path), f"/inbox/{job.path.name}")

    tasks = []
    for dept, mine in by_dept.items():
        share = max(1, round(clients * len(mine) / len(jobs)))
        tasks += [session(dept, mine[k::share]) for k in range(share)]
    await asyncio.gather(*tasks)


def wait_done(h: NodeHarness, jobs: list[Job], timeout: float) -> dict[str, float]:
    """Wait until every job has its receipt and every accepted query its result; returns the
    time each reached its end (receipt, or result for a query), by bundle id."""
    want = {j.bundle_id: j for j in jobs}
    done: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(done) < len(want):
        for u in h.uploads():
            job = want.get(u.bundle_id or "")
            if job is None or job.bundle_id in done or not u.receipt_name:
                continue
            if job.kind == "query" and u.state != "rejected":
                result = h.outbox(MZ) / result_name(job.bundle_id)
                if not result.exists():
                    continue
                done[job.bundle_id] = result.stat().st_mtime
            else:
                done[job.bundle_id] = (h.outbox(u.dept_code) / u.receipt_name).stat().st_mtime
        time.sleep(0.2)
    return done


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


def report(h: NodeHarness, jobs: list[Job], t0: float, done: dict[str, float]) -> None:
    receipts = {
        u.bundle_id: (h.outbox(u.dept_code) / u.receipt_name).stat().st_mtime
        for u in h.uploads()
        if u.bundle_id and u.receipt_name
    }
    states = {u.bundle_id: (u.state, u.reason_code) for u in h.uploads() if u.bundle_id}
    print(f"\n{'kind':<10} {'n':>5} {'/s':>7} {'receipt p50':>12} {'p99':>8} "
          f"{'result p50':>11} {'p99':>8}  states")  # fmt: skip
    for kind in ("query", "increment", "large"):
        mine = [j for j in jobs if j.kind == kind]
        if not mine:
            continue
        rec = [(receipts[j.bundle_id] - j.start) * 1000 for j in mine if j.bundle_id in receipts]
        res = [(done[j.bundle_id] - j.start) * 1000 for j in mine if j.bundle_id in done]
        last = max((receipts.get(j.bundle_id, t0) for j in mine), default=t0)
        rate = len(rec) / max(1e-9, last - t0)
        seen: dict[str, int] = {}
        for j in mine:
            state, code = states.get(j.bundle_id, ("missing", None))
            key = state if code is None else f"{state} {code}"
            seen[key] = seen.get(key, 0) + 1
        result = f"{pct(res, 0.5):11.0f} {pct(res, 0.99):8.0f}" if kind == "query" else " " * 20
        print(
            f"{kind:<10} {len(mine):>5} {rate:7.1f} {pct(rec, 0.5):12.0f} {pct(rec, 0.99):8.0f} "
            f"{result}  {', '.join(f'{k}: {v}' for k, v in sorted(seen.items()))}"
        )
    assert h.proc is not None
    rss = sum(peak_rss(pid) for pid in node_pids(h.proc.pid))
    print(f"node peak RSS (front + pipeline): {rss / 2**20:.0f} MiB   (goal < 1024 MiB)")
    print(
        "goals (2 cores): a 100-person query's result p99 < 2000 ms; a small increment "
        "stored p99 < 2000 ms"
    )
    uploads = {u.id for u in h.uploads() if u.bundle_id in {j.bundle_id for j in jobs}}
    print_stages(h.log_path.read_text(encoding="utf-8", errors="replace"), uploads)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--increments", type=int, default=300)
    ap.add_argument("--increment-rows", type=int, default=20)
    ap.add_argument("--large", type=int, default=2, help="large increments in the same run")
    ap.add_argument("--large-rows", type=int, default=200_000)
    ap.add_argument("--base-rows", type=int, default=200_000)
    ap.add_argument("--population", type=int, default=100_000)
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir)")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-load-"))
    work.mkdir(parents=True, exist_ok=True)
    security = {
        "max_upload_bytes": 8 << 30,
        "max_preauth_per_address": max(32, args.clients),
        "max_preauth_connections": max(64, args.clients),
    }
    specs = [
        DeptSpec(MZ, "杭州市民政局", quota_bytes=64 << 30),
        DeptSpec(RS, "杭州市人社局", quota_bytes=64 << 30),
    ]
    try:
        with NodeHarness(work / "node", specs, security=security) as h:
            base, jobs = make_jobs(h, args, work)
            t = time.time()
            asyncio.run(push_all(h, [base], 1))
            wait_done(h, [base], args.timeout)
            print(f"base dataset: {args.base_rows} rows stored in {time.time() - t:.1f} s")
            t0 = time.time()
            asyncio.run(push_all(h, jobs, args.clients))
            done = wait_done(h, jobs, args.timeout)
            print(f"{len(jobs)} bundles over {args.clients} sessions: {time.time() - t0:.1f} s")
            report(h, jobs, t0, done)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
