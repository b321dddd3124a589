"""Benchmark: a sealed query answered by the node, against plain DuckDB SQL and pandas.

    .venv/bin/python bench/compare.py                                 # 1,000,000 x 20,000,000
    .venv/bin/python bench/compare.py --persons 100k --rows 2M        # quick
    .venv/bin/python bench/compare.py --data-format parquet --skip-pandas --dir /var/tmp --keep

One run, on one machine, with fresh synthetic data (``exchange_server.data.synthetic``): a persons
list of ``--persons`` people and ``--rows`` records of one catalog resource (default RS-SI-01,
人社 social insurance, 10 columns) over a population of ``--population`` (default
max(persons, rows / 4): the listed persons are the first of it, so with the defaults about 98 %
have records, on average four, from 12 monthly snapshots). A throw-away CA (made here, deleted
with the work folder) issues a department and a node certificate.

Each group below runs in its own process, so its peak RSS is its own (``os.wait4``):

1. ``generate``: the provider's table (``--data-format`` CSV or Parquet), the same data as plain
   Parquet for the baselines, and the department's query sealed to the node (``seal_to_file``):
   the application (查询申请: business type 低保, the resource, result format Parquet) in its
   manifest and the persons list (ID number, name, household, authorization reference) as CSV.
2. ``ingest``: :meth:`DatasetStore.ingest` stores the provider's table the node's way (checked
   row by row, encrypted Parquet under the node data key, a ``dataset_version`` row in the
   node's SQLite state store); timed alone, reported in rows/s.
3. ``pipeline``: the node itself, sealed bundle to sealed bundle. The query is handed to the
   node's ingest pipeline as the SFTP front hands over an upload (``Handover.accept_upload``,
   untimed), then ``Runner.process`` takes it all the way, exactly as in the running node:
   verify the bundle and its sender (certificate, chain, CRL, registered address, replay),
   formal review (open and decrypt, application against the published catalog, the persons
   list checked and written encrypted: :mod:`exchange_server.data.persons`), the signed receipt,
   the answer (:func:`exchange_server.data.engine.match` over the encrypted dataset, with the items
   the catalog releases), and the result sealed and signed for the department in its outbox.
   Stage times come from :attr:`Workflow.timings`; ``verify, receipt, audit`` is the rest.
   Afterwards, untimed, the department opens the result bundle and its rows are counted.
4. ``duckdb-sql``: the join a careful analyst writes by hand in DuckDB on the plain Parquet
   files: persons LEFT JOIN the latest records of those persons, written to Parquet.
5. ``pandas``: the same as ``read_parquet`` + ``merge`` + latest per person + ``to_parquet``
   (skipped with a message when pandas is missing or with ``--skip-pandas``).

The join-stage ratio is the node's ``match`` step over ``duckdb-sql``. Result row counts are compared as a
sanity check. Not a test: numbers depend on the machine and on what else runs on it.
"""

# ruff: noqa: S608

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource as rlimit
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb

from exchange_common.catalog import Resource, load_catalog
from exchange_common.tables.sql import quote_ident, quote_literal
from exchange_server.admin.home import create_home
from exchange_server.data.catalog import CatalogStore
from exchange_server.data.datasets import DatasetStore
from exchange_server.data.synthetic import write_dataset, write_persons
from exchange_server.node import Node
from exchange_server.pipeline.assembly import handover_to, node_runner
from exchange_server.pipeline.workflow import Workflow, result_name
from exchange_server.store.registry import add_department
from pki.bundle import BundleKind, Member, open_bundle, seal_to_file
from pki.ca import CertificateAuthority
from pki.identity import DeptCode, Role, parse_networks
from pki.keys import certificate_pem, load_certificates, load_private_key, private_key_pem
from pki.verify import TrustStore

ROOT = Path(__file__).resolve().parents[1]
SUFFIX = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000}
GIB = 1 << 30
DEPT, NODE = "MZ330100", "NODE01"

GOAL_PIPELINE_S = 15.0
GOAL_JOIN_RATIO = 1.3
GOAL_RSS = 4 * GIB
GOAL_INGEST_ROWS_S = 1_000_000


def count(text: str) -> int:
    """``1000000``, ``1M``, ``100k``, ``20m``."""
    t = text.strip().lower().replace("_", "")
    unit = t[-1] if t and t[-1] in SUFFIX else ""
    return int(float(t[: len(t) - len(unit)]) * SUFFIX[unit])


class Clock:
    """Wall-clock seconds per named stage, in order."""

    def __init__(self) -> None:
        self.stages: dict[str, float] = {}

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        out = fn()
        self.stages[name] = round(time.perf_counter() - t0, 3)
        return out


# ------------------------------------------------------------------------------ throw-away PKI


def make_pki(folder: Path) -> None:
    """A CA (no passphrase), a department and a node certificate with keys, a CRL."""
    ca = CertificateAuthority.init(folder / "ca", "Bench CA", passphrase=None)
    try:
        for who, code, name, role in (
            ("dept", DEPT, "杭州市民政局 (bench)", Role.DEPARTMENT),
            ("node", NODE, "Bench node", Role.NODE),
        ):
            issued = ca.issue(DeptCode(code), name, parse_networks(["127.0.0.1"]), role=role)
            assert issued.key is not None
            (folder / f"{who}.pem").write_bytes(certificate_pem(issued.chain))
            key = folder / f"{who}.key"
            key.write_bytes(private_key_pem(issued.key, None))
            key.chmod(0o600)
        ca.crl(now=dt.datetime.now(dt.UTC))
    finally:
        ca.close()


def trust(pki: Path) -> TrustStore:
    return TrustStore.from_files(pki / "ca" / "root.pem", pki / "ca" / "crl.pem")


# ------------------------------------------------------------------------------ child stages


def make_node(work: Path, catalog: Path) -> None:
    """A node home as ``exchange-server init`` makes it (SQLite state store), the department
    registered (certificate, 127.0.0.1), and ``catalog`` published."""
    pki, home = work / "pki", work / "node"
    create_home(
        home,
        trust=pki / "ca" / "root.pem",
        cert=pki / "node.pem",
        key=pki / "node.key",
        crl=pki / "ca" / "crl.pem",
    )
    node = Node.open(home)
    with node.session() as s:
        add_department(
            s,
            DEPT,
            name=None,
            certificate=load_certificates(pki / "dept.pem"),
            trust=node.trust(),
            allow_ips=["127.0.0.1"],
            quota_bytes=1 << 40,
            now=dt.datetime.now(dt.UTC),
            actor="bench",
        )
    CatalogStore.for_home(home).publish(catalog)


def node_store(work: Path, threads: int | None) -> DatasetStore:
    """The DatasetStore of the bench's node home."""
    return DatasetStore(Node.open(work / "node"), threads=threads)


def stage_generate(args: argparse.Namespace, resource: Resource, work: Path) -> dict[str, Any]:
    clock = Clock()
    population = args.population or max(args.persons, args.rows // 4)
    persons_pq, data_pq = work / "persons.parquet", work / "data.parquet"
    clock.run("persons", lambda: write_persons(persons_pq, args.persons, threads=args.threads))
    clock.run(
        "dataset",
        lambda: write_dataset(
            data_pq, resource, args.rows, population=population, threads=args.threads
        ),
    )
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    persons_csv = work / "persons.csv"
    clock.run(
        "persons.csv",
        lambda: con.execute(
            "COPY (SELECT id_number AS 身份证号, name AS 姓名, household_id AS 户编号, "
            "'SQ2026-' || left(md5(id_number), 10) AS 授权编号 "
            f"FROM read_parquet({quote_literal(str(persons_pq))})) "
            f"TO {quote_literal(str(persons_csv))} (HEADER)"
        ),
    )
    if args.data_format == "csv":
        clock.run(
            "dataset.csv",
            lambda: con.execute(
                f"COPY (FROM read_parquet({quote_literal(str(data_pq))})) "
                f"TO {quote_literal(str(work / 'data.csv'))} (HEADER)"
            ),
        )
    con.close()

    pki = work / "pki"
    dept_key = load_private_key(pki / "dept.key")
    clock.run(
        "seal query",
        lambda: seal_to_file(
            [Member("persons.csv", persons_csv)],
            work / "query.bundle",
            signer_key=dept_key,
            signer_chain=load_certificates(pki / "dept.pem"),
            recipients=load_certificates(pki / "node.pem")[:1],
            kind=BundleKind.QUERY,
            fields={
                "business_type": "低保",
                "purpose": "最低生活保障家庭经济状况核对 (benchmark)",
                "persons": args.persons,
                "resources": [resource.code],
                "result_format": "parquet",
            },
            now=dt.datetime.now(dt.UTC),
        ),
    )
    return {
        "stages": clock.stages,
        "population": population,
        "data_bytes": (work / f"data.{args.data_format}").stat().st_size,
        "query_bytes": (work / "query.bundle").stat().st_size,
    }


def stage_ingest(args: argparse.Namespace, resource: Resource, work: Path) -> dict[str, Any]:
    store = node_store(work, args.threads)
    table = work / f"data.{args.data_format}"
    scratch = work / "ingest-work"
    scratch.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    report = store.ingest(
        resource,
        table,
        bundle_id=str(uuid.uuid4()),
        provider=resource.provider,
        mode="full",
        catalog_version=1,
        work=scratch,
        now=dt.datetime.now(dt.UTC),
    )
    seconds = time.perf_counter() - t0
    files = store.current_files(resource.code)
    return {
        "seconds": round(seconds, 3),
        "rows": report.rows,
        "stored": report.stored,
        "rejected": report.rejected,
        "rows_per_s": round(report.rows / seconds),
        "stored_bytes": sum(f.stat().st_size for f in files),
    }


def stage_pipeline(args: argparse.Namespace, resource: Resource, work: Path) -> dict[str, Any]:
    node = Node.open(work / "node")
    ingest = node_runner(node)
    handover = handover_to(ingest)
    workflow = ingest.router
    assert isinstance(workflow, Workflow)
    workflow.datasets.threads = args.threads
    workflow.datasets.memory_limit = args.memory_limit

    # what the SFTP front does when an upload closes (untimed): the file lands in the spool
    upload_id, partial = handover.new_partial()
    shutil.copyfile(work / "query.bundle", partial)
    handover.accept_upload(
        upload_id=upload_id,
        dept=DEPT,
        partial=partial,
        file_name="query.bundle",
        remote_addr="127.0.0.1",
    )
    t0 = time.perf_counter()
    state = ingest.process(upload_id)
    total = time.perf_counter() - t0
    if state.value != "done" or len(workflow.timings) != 1:
        raise SystemExit(f"the node did not answer the query (upload state {state.value})")
    ((bundle_id, steps),) = workflow.timings.items()
    stages = {k.split(":")[0]: v for k, v in steps.items()}
    stages["verify, receipt, audit"] = round(total - sum(stages.values()), 3)

    # the department's side, untimed: open the result and count what it holds
    pki = work / "pki"
    dept_key, dept_cert = load_private_key(pki / "dept.key"), load_certificates(pki / "dept.pem")
    result = ingest.spool.outbox(DEPT) / result_name(bundle_id)
    back = open_bundle(
        result,
        work / "received",
        recipient_key=dept_key,
        recipient_cert=dept_cert[0],
        trust=trust(pki),
        now=dt.datetime.now(dt.UTC),
    )
    received = {p.name: p for p in back.paths}
    report = json.loads(received["report.json"].read_text(encoding="utf-8"))["resources"][0]
    results = received[f"{resource.code}-results.parquet"]
    (rows,) = duckdb.sql(
        f"SELECT count(*) FROM read_parquet({quote_literal(str(results))})"
    ).fetchone() or (0,)
    return {
        "stages": stages,
        "total": round(total, 3),
        "counts": {
            k: report[k]
            for k in ("persons", "duplicates", "matched_persons", "records", "households")
        },
        "items": len(report["items"]),
        "result_rows": int(rows),
        "result_bytes": result.stat().st_size,
    }


def hand_join(
    persons: Path, data: Path, out: Path, key: str, when: str, threads: int | None
) -> dict[str, Any]:
    """The join a careful analyst writes by hand in DuckDB on plain Parquet: ``persons``
    (``id_number``, ...) LEFT JOIN the latest records (by column ``when``) of ``data`` (key
    column ``key``), written to ``out``. Seconds and result rows. Also used by bench/relay.py."""
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    p, d, o, k, w = (
        quote_literal(str(persons)),
        quote_literal(str(data)),
        quote_literal(str(out)),
        quote_ident(key),
        quote_ident(when),
    )
    t0 = time.perf_counter()
    con.execute(
        f"""COPY (
            SELECT p.*, d.* FROM read_parquet({p}) p
            LEFT JOIN (
                SELECT d.* FROM read_parquet({d}) d
                SEMI JOIN read_parquet({p}) p ON d.{k} = p.id_number
                QUALIFY d.{w} = max(d.{w}) OVER (PARTITION BY d.{k})
            ) d ON d.{k} = p.id_number
        ) TO {o} (FORMAT parquet, COMPRESSION snappy)"""
    )
    seconds = time.perf_counter() - t0
    (rows,) = con.execute(f"SELECT count(*) FROM read_parquet({o})").fetchone() or (0,)
    con.close()
    return {"seconds": round(seconds, 3), "rows": int(rows)}


def stage_plain(args: argparse.Namespace, resource: Resource, work: Path) -> dict[str, Any]:
    assert resource.time_item is not None
    return hand_join(
        work / "persons.parquet",
        work / "data.parquet",
        work / "raw.parquet",
        resource.key_item,
        resource.time_item,
        args.threads,
    )


def stage_pandas(args: argparse.Namespace, resource: Resource, work: Path) -> dict[str, Any]:
    import pandas as pd  # type: ignore[import-untyped]

    key, when = resource.key_item, resource.time_item
    t0 = time.perf_counter()
    p = pd.read_parquet(work / "persons.parquet")
    d = pd.read_parquet(work / "data.parquet")
    d = d[d[key].isin(p["id_number"])]
    d = d[d[when] == d.groupby(key)[when].transform("max")]
    merged = p.merge(d, how="left", left_on="id_number", right_on=key)
    merged.to_parquet(work / "pandas.parquet")
    return {"seconds": round(time.perf_counter() - t0, 3), "rows": len(merged)}


STAGES: dict[str, Callable[[argparse.Namespace, Resource, Path], dict[str, Any]]] = {
    "generate": stage_generate,
    "ingest": stage_ingest,
    "pipeline": stage_pipeline,
    "duckdb-sql": stage_plain,
    "pandas": stage_pandas,
}


# ------------------------------------------------------------------------------ the parent


def run_child(stage: str, work: Path, script: str = __file__) -> tuple[dict[str, Any], float]:
    """Run ``stage`` of bench ``script`` (this one unless given: bench/relay.py shares it) in
    a fresh interpreter; its JSON result and its own peak RSS (bytes)."""
    argv = [a for a in sys.argv[1:] if a != "--keep"]
    proc = subprocess.Popen([sys.executable, script, *argv, "--child", stage, "--work", str(work)])
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"stage {stage} failed (exit {proc.returncode})")
    result: dict[str, Any] = json.loads((work / f"{stage}.json").read_text(encoding="utf-8"))
    return result, usage.ru_maxrss * 1024.0


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--persons", type=count, default=1_000_000, help="persons in the list")
    ap.add_argument("--rows", type=count, default=20_000_000, help="dataset rows")
    ap.add_argument("--population", type=count, help="persons the dataset covers")
    ap.add_argument("--resource", default="RS-SI-01", help="catalog resource to generate")
    ap.add_argument("--catalog", type=Path, default=ROOT / "config" / "catalog.example.toml")
    ap.add_argument(
        "--data-format", choices=("csv", "parquet"), default="csv", help="the provider's table"
    )
    ap.add_argument("--threads", type=int, help="DuckDB threads (default: all cores)")
    ap.add_argument("--memory-limit", help="DuckDB memory limit of the match (e.g. 3GB)")
    ap.add_argument("--skip-pandas", action="store_true", help="do not run the pandas merge")
    ap.add_argument("--dir", type=Path, help="work folder parent (default: the temp folder)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--child", choices=sorted(STAGES), help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()

    resource = load_catalog(args.catalog).resource(args.resource)
    if resource is None or resource.time_item is None:
        sys.exit(f"{args.resource}: not in the catalog or has no time item")
    if args.child:
        assert args.work is not None
        out = STAGES[args.child](args, resource, args.work)
        (args.work / f"{args.child}.json").write_text(json.dumps(out), encoding="utf-8")
        return

    work = Path(tempfile.mkdtemp(prefix="bench-compare-", dir=args.dir))
    threads = args.threads or len(os.sched_getaffinity(0))
    print(
        f"{args.persons:,} persons x {args.rows:,} rows of {resource.code} "
        f"({len(resource.items)} columns), provider table {args.data_format}; "
        f"{threads} threads; work in {work}",
        flush=True,
    )
    try:
        make_pki(work / "pki")
        make_node(work, args.catalog)
        rss: dict[str, float] = {}

        gen, rss["generate"] = run_child("generate", work)
        print(
            "generate  "
            + ", ".join(f"{k} {v:.1f} s" for k, v in gen["stages"].items())
            + f"; provider table {gen['data_bytes'] / 1e6:,.0f} MB, "
            f"query bundle {gen['query_bytes'] / 1e6:,.1f} MB, population {gen['population']:,}",
            flush=True,
        )

        ing, rss["ingest"] = run_child("ingest", work)
        print(
            f"ingest    DatasetStore.ingest {ing['rows']:,} rows ({args.data_format}) in "
            f"{ing['seconds']:.2f} s = {ing['rows_per_s'] / 1e6:.2f} M rows/s; "
            f"stored {ing['stored']:,}, rejected {ing['rejected']:,}, "
            f"{ing['stored_bytes'] / 1e6:,.0f} MB encrypted; peak RSS {mib(rss['ingest'])}",
            flush=True,
        )

        pipe, rss["pipeline"] = run_child("pipeline", work)
        print(
            f"pipeline  sealed query -> sealed result {pipe['total']:.2f} s; "
            f"peak RSS {mib(rss['pipeline'])}"
        )
        for name, seconds in pipe["stages"].items():
            print(f"    {name:<24} {seconds:7.2f} s")
        c = pipe["counts"]
        print(
            f"    {c['persons']:,} persons ({c['duplicates']:,} repeated), "
            f"{c['matched_persons']:,} with records, {c['records']:,} records, "
            f"{c['households']:,} households, {pipe['items']} items released; the department received "
            f"{pipe['result_rows']:,} result rows ({pipe['result_bytes'] / 1e6:,.0f} MB bundle)",
            flush=True,
        )

        plain, rss["duckdb-sql"] = run_child("duckdb-sql", work)
        print(
            f"duckdb-sql hand-written join on plain Parquet {plain['seconds']:.2f} s, "
            f"{plain['rows']:,} rows; peak RSS {mib(rss['duckdb-sql'])}",
            flush=True,
        )

        pandas_out: dict[str, Any] | None = None
        if args.skip_pandas:
            print("pandas    skipped (--skip-pandas)")
        else:
            try:
                import pandas  # noqa: F401
            except ImportError:
                print("pandas    not installed, skipped (pip install pandas to compare)")
            else:
                pandas_out, rss["pandas"] = run_child("pandas", work)
                print(
                    f"pandas    read_parquet + merge + to_parquet {pandas_out['seconds']:.2f} s, "
                    f"{pandas_out['rows']:,} rows; peak RSS {mib(rss['pandas'])}",
                    flush=True,
                )

        counts = {"engine": pipe["result_rows"], "duckdb-sql": plain["rows"]}
        if pandas_out is not None:
            counts["pandas"] = pandas_out["rows"]
        if len(set(counts.values())) != 1:
            print(f"WARNING: result row counts differ: {counts}")

        join = pipe["stages"]["match"]
        ratio = join / plain["seconds"]
        node_rss = max(rss["ingest"], rss["pipeline"])
        print("\nsummary")
        print(f"  whole pipeline (sealed query -> sealed result) {pipe['total']:.2f} s")
        print(
            f"  join stage: engine.match {join:.2f} s / duckdb-sql {plain['seconds']:.2f} s "
            f"= {ratio:.2f}x"
        )
        if pandas_out is not None:
            print(f"  pandas / engine.match {pandas_out['seconds'] / join:.2f}x")
        print(f"  ingestion {ing['rows_per_s'] / 1e6:.2f} M rows/s ({args.data_format})")
        print(
            "  peak RSS by process: "
            + ", ".join(f"{k} {mib(v)}" for k, v in rss.items())
            + f"; this process {mib(rlimit.getrusage(rlimit.RUSAGE_SELF).ru_maxrss * 1024)}, "
            f"children max {mib(rlimit.getrusage(rlimit.RUSAGE_CHILDREN).ru_maxrss * 1024)}"
        )
        full_size = (args.persons, args.rows) == (1_000_000, 20_000_000)
        print(
            "goals"
            if full_size
            else "goals (set for 1,000,000 x 20,000,000: fixed costs weigh more here)"
        )
        print(f"  pipeline < {GOAL_PIPELINE_S:.0f} s: {verdict(pipe['total'] < GOAL_PIPELINE_S)}")
        print(f"  join <= {GOAL_JOIN_RATIO}x duckdb-sql: {verdict(ratio <= GOAL_JOIN_RATIO)}")
        print(f"  node peak RSS < 4 GiB ({mib(node_rss)}): {verdict(node_rss < GOAL_RSS)}")
        print(f"  ingestion >= 1 M rows/s: {verdict(ing['rows_per_s'] >= GOAL_INGEST_ROWS_S)}")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
