"""Benchmark: a provider's answer to a relayed query, through the node, against the hosted answer.

    .venv/bin/python bench/relay.py                          # 1,000,000 persons, 1,000,000 rows
    .venv/bin/python bench/relay.py --quick                  # 20,000 x 20,000, a few seconds
    .venv/bin/python bench/relay.py --persons 200k --rows 200k --dir /var/tmp --keep

One run, on one machine, with fresh synthetic data. A throw-away CA issues the requester
(MZ330100, 民政), the provider (RS330100, 人社) and the node; a real node home is made in the
work folder (``create_home``, both departments registered with 127.0.0.1) and a catalog is
published: the example catalog (``config/catalog.example.toml``) plus RS-JY-01-NODE, a copy of
RS-JY-01 (就业失业登记信息: 公民身份号码, 就业状态 code list, 就业单位名称, 登记日期 date)
with ``answered_by = "node"``, written to the work folder at run time. RS-JY-01 itself is kept
by 人社 (``answered_by = "provider"``): the node relays queries for it.

The data: a persons list of ``--persons`` people (valid GB 11643 numbers,
``exchange_server.data.synthetic``) and one table of ``--rows`` records of the resource, about
one per person: every thousandth person of the list has no record, and the rows over are
second records of other persons. The same table is the provider's answer to the relay and the
dataset 人社 pushes for the copy, so both paths answer the same question from the same rows.

Each group below runs in its own process (its peak RSS is its own, ``os.wait4``):

1. ``generate``: the persons list (CSV: ID number, name, household, authorization), the table
   (CSV, as ``exchange-client push`` sends tables; for the answer also the text-only Parquet
   that ``exchange-client respond`` seals, :func:`text_parquet`, decision 0007; ``--answer-format
   csv`` sends the CSV instead, as a client that does not convert would), and three sealed bundles:
   the relayed query (RS-JY-01), the hosted query (RS-JY-01-NODE: same persons, same items)
   and 人社's data push of the table for RS-JY-01-NODE.
2. ``relayed``: the relayed query goes through ``Runner.process`` (formal review, receipt,
   the relay sealed for 人社: timed, for reference). 人社 opens the relay (untimed), answers
   with the table as a ``response`` bundle whose ``in_reply_to`` is the relay id, and the
   response is handed over as the SFTP front hands over a closed upload (untimed). **Timed:**
   ``Runner.process`` of the response, the node's whole work on the answer: verify the bundle
   and its sender, ``open`` (decrypt), ``answer`` (:func:`merge_answer`, one pass: the shared
   validator, the persons-asked check, the engine's stages writing the requester's result
   files), ``place`` (the merged content moved into the next segment), the segment's
   assignment, ``seal`` (the result segment sealed and signed into 民政's outbox, audited),
   the receipt. Step times come from :attr:`Workflow.timings`; the Runner's own part
   (verification, registry, receipt, states) is the rest of the wall time of ``process``.
   After the timed run, ``pki.bundle.verify`` alone and :func:`merge_answer` (for its own
   stages) run again on the same bundle and table; they are not part of the figures.
3. ``hosted``: 人社's push of the table for RS-JY-01-NODE goes through the pipeline (timed, for
   reference: the hosted path's counterpart of storing the answer), then the hosted query. **Timed:**
   its route, from the accepted query to its sealed segment (the engine's ``match`` and
   ``seal``), and ``match`` alone.

Afterwards, untimed, 民政 opens each result segment and its rows are counted: both paths must
return the same number of result rows. Reported: per-step seconds, the relayed answer's rows/s
(table rows / wall time of ``process``; the goal is 1,000,000 rows/s), and relayed/hosted time
ratios (whole work; engine alone). Beside wall time, the CPU seconds of the timed call (every
thread of the process, ``time.process_time``) and the load average: on a shared machine the CPU
figure moves less than the wall time. Not a test: numbers depend on the machine and its load.
"""

# ruff: noqa: S608

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb

from bench.compare import Clock, count, hand_join, mib, trust  # the shared bench helpers
from bench.compare import run_child as _run_child
from exchange_common.catalog import Resource, load_catalog
from exchange_common.idnumber import china_today
from exchange_common.tables.source import text_parquet
from exchange_common.tables.sql import quote_ident, quote_literal
from exchange_server.admin.home import create_home
from exchange_server.data.answers import merge_answer
from exchange_server.data.catalog import CatalogStore
from exchange_server.data.synthetic import COMPANIES, write_persons
from exchange_server.node import Node
from exchange_server.pipeline.assembly import handover_to, node_runner
from exchange_server.pipeline.queries import relay_id, relay_name, result_name
from exchange_server.pipeline.router import AcceptedBundle, RouteOutcome
from exchange_server.pipeline.runner import Runner
from exchange_server.pipeline.workflow import Workflow
from exchange_server.store.models import Upload
from exchange_server.store.registry import add_department
from pki.bundle import BundleKind, Member, open_bundle, seal_to_file, verify
from pki.ca import CertificateAuthority
from pki.identity import DeptCode, Role, parse_networks
from pki.keys import certificate_pem, load_certificates, load_private_key, private_key_pem

ROOT = Path(__file__).resolve().parents[1]
MZ, RS, NODE = "MZ330100", "RS330100", "NODE01"
RELAYED, HOSTED = "RS-JY-01", "RS-JY-01-NODE"
ITEMS = ["就业状态", "就业单位名称", "登记日期"]
#: Every ABSENT_EVERY-th person of the list has no record in the provider's table.
ABSENT_EVERY = 1000

GOAL_ROWS_S = 1_000_000


# ------------------------------------------------------------------------------ setup (parent)


def make_pki(folder: Path) -> None:
    """A CA (no passphrase), 民政, 人社 and a node certificate with keys, a CRL."""
    ca = CertificateAuthority.init(folder / "ca", "Bench CA", passphrase=None)
    try:
        for who, name, role in (
            (MZ, "杭州市民政局 (bench)", Role.DEPARTMENT),
            (RS, "杭州市人社局 (bench)", Role.DEPARTMENT),
            (NODE, "Bench node", Role.NODE),
        ):
            issued = ca.issue(DeptCode(who), name, parse_networks(["127.0.0.1"]), role=role)
            assert issued.key is not None
            (folder / f"{who}.pem").write_bytes(certificate_pem(issued.chain))
            key = folder / f"{who}.key"
            key.write_bytes(private_key_pem(issued.key, None))
            key.chmod(0o600)
        ca.crl(now=dt.datetime.now(dt.UTC))
    finally:
        ca.close()


def catalog_variant(example: Path, target: Path) -> None:
    """Write ``example`` plus HOSTED, a copy of RELAYED answered by the node, to ``target``.

    The copy is cut from the example's text (so it cannot drift from it) and checked after
    parsing: same provider, key, time item and items as RELAYED; only code, name and
    ``answered_by`` differ."""
    text = example.read_text(encoding="utf-8")
    start = text.index(f'[[resource]]\ncode = "{RELAYED}"')
    end = re.compile(r"^(# -+|\[\[resource\]\])", re.MULTILINE).search(text, start + 1)
    block = text[start : end.start() if end else len(text)]
    copy = block.replace(f'code = "{RELAYED}"', f'code = "{HOSTED}"', 1)
    copy = re.sub(r'^answered_by = "provider".*$', 'answered_by = "node"', copy, flags=re.M)
    copy = re.sub(
        r'^(name = "[^"]*)"', r'\1 (bench: answered by the node)"', copy, count=1, flags=re.M
    )
    target.write_text(
        text.rstrip("\n") + f"\n\n# bench/relay.py: {RELAYED} answered by the node\n" + copy,
        encoding="utf-8",
    )
    catalog = load_catalog(target)
    a, b = catalog.resource(RELAYED), catalog.resource(HOSTED)
    assert a is not None and b is not None
    assert (a.answered_by.value, b.answered_by.value) == ("provider", "node")
    assert (a.provider, a.key_item, a.time_item, a.items) == (
        b.provider,
        b.key_item,
        b.time_item,
        b.items,
    )


def make_node(work: Path, catalog: Path) -> None:
    """A node home (SQLite state store), 民政 and 人社 registered, ``catalog`` published."""
    pki, home = work / "pki", work / "node"
    create_home(
        home,
        trust=pki / "ca" / "root.pem",
        cert=pki / f"{NODE}.pem",
        key=pki / f"{NODE}.key",
        crl=pki / "ca" / "crl.pem",
    )
    node = Node.open(home)
    with node.session() as s:
        for code in (MZ, RS):
            add_department(
                s,
                code,
                name=None,
                certificate=load_certificates(pki / f"{code}.pem"),
                trust=node.trust(),
                allow_ips=["127.0.0.1"],
                quota_bytes=1 << 40,
                now=dt.datetime.now(dt.UTC),
                actor="bench",
            )
    CatalogStore.for_home(home).publish(catalog)


def seal(
    work: Path, sender: str, members: list[Path], out: Path, kind: BundleKind, fields: Any
) -> str:
    """Seal ``members`` from ``sender`` to the node into ``out``; the bundle id."""
    pki = work / "pki"
    bundle_id = uuid.uuid4()
    seal_to_file(
        [Member(p.name, p) for p in members],
        out,
        signer_key=load_private_key(pki / f"{sender}.key"),
        signer_chain=load_certificates(pki / f"{sender}.pem"),
        recipients=load_certificates(pki / f"{NODE}.pem")[:1],
        kind=kind,
        fields=fields,
        now=dt.datetime.now(dt.UTC),
        bundle_id=bundle_id,
    )
    return str(bundle_id)


def open_for(work: Path, dept: str, bundle: Path, out: Path) -> tuple[dict[str, Any], Path]:
    """``dept`` opens ``bundle`` (sealed by the node) into ``out``: its fields and folder."""
    pki = work / "pki"
    opened = open_bundle(
        bundle,
        out,
        recipient_key=load_private_key(pki / f"{dept}.key"),
        recipient_cert=load_certificates(pki / f"{dept}.pem")[0],
        trust=trust(pki),
        now=dt.datetime.now(dt.UTC),
    )
    return dict(opened.manifest.fields), out


# ------------------------------------------------------------------------------ child stages


def answer_sql(resource: Resource, persons: Path, rows: int, count_persons: int) -> str:
    """SQL for the provider's table: ``rows`` records of ``resource`` for the listed persons.

    Row r is person ``r mod count_persons`` of the list (file order), except that every
    ABSENT_EVERY-th person has no record and its row goes to the person before it."""
    status = resource.item("就业状态")
    assert status is not None and status.values
    codes = "[" + ", ".join(quote_literal(v) for v in status.values) + "]"
    companies = "[" + ", ".join(quote_literal(c) for c in COMPANIES) + "]"
    absent = ABSENT_EVERY if count_persons >= ABSENT_EVERY else count_persons + 1
    q = f"(r % {int(count_persons)})"
    who = f"CASE WHEN {q} % {absent} = {absent - 1} THEN {q} - 1 ELSE {q} END"
    return (
        f"SELECT p.id_number AS {quote_ident(resource.key_item)}, "
        f"{codes}[1 + CAST(hash(r, 1) % {len(status.values)} AS INTEGER)] AS {quote_ident('就业状态')}, "
        f"{companies}[1 + CAST(hash(r, 2) % {len(COMPANIES)} AS INTEGER)] "
        f"AS {quote_ident('就业单位名称')}, "
        f"DATE '2005-01-01' + CAST(hash(r, 3) % 7000 AS INTEGER) AS {quote_ident('登记日期')} "
        f"FROM (SELECT range AS r, {who} AS i FROM range({int(rows)})) a "
        f"JOIN (SELECT file_row_number AS i, id_number "
        f"FROM read_parquet({quote_literal(str(persons))}, file_row_number = true)) p USING (i)"
    )


def application(args: argparse.Namespace, code: str) -> dict[str, Any]:
    return {
        "business_type": "低保",
        "purpose": "最低生活保障家庭经济状况核对 (benchmark)",
        "persons": args.persons,
        "resources": [{"code": code, "items": ITEMS}],
        "result_format": args.result_format,
    }


def stage_generate(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    clock = Clock()
    resource = load_catalog(work / "catalog.toml").resource(RELAYED)
    assert resource is not None
    persons_pq, persons_csv = work / "persons.parquet", work / "persons.csv"
    table = work / "answer.csv"
    answer = work / f"answer.{args.answer_format}"
    clock.run("persons", lambda: write_persons(persons_pq, args.persons, threads=args.threads))
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    if args.threads:
        con.execute(f"SET threads = {int(args.threads)}")
    clock.run(
        "persons.csv",
        lambda: con.execute(
            "COPY (SELECT id_number AS 身份证号, name AS 姓名, household_id AS 户编号, "
            "'SQ2026-' || left(md5(id_number), 10) AS 授权编号 "
            f"FROM read_parquet({quote_literal(str(persons_pq))})) "
            f"TO {quote_literal(str(persons_csv))} (HEADER)"
        ),
    )
    clock.run(
        "table",
        lambda: con.execute(
            f"COPY ({answer_sql(resource, persons_pq, args.rows, args.persons)}) "
            f"TO {quote_literal(str(table))} (HEADER)"
        ),
    )
    clock.run("answer as respond seals it", lambda: text_parquet(table, work / "answer.parquet"))
    row = con.execute(
        f"SELECT count(*), count(DISTINCT {quote_ident(resource.key_item)}) "
        f"FROM read_csv({quote_literal(str(table))}, header = true, all_varchar = true)"
    ).fetchone()
    con.close()
    assert row is not None
    table_rows, table_persons = int(row[0]), int(row[1])
    ids: dict[str, str] = {}

    def seal_all() -> None:
        for name, code in (("relayed", RELAYED), ("hosted", HOSTED)):
            ids[name] = seal(
                work,
                MZ,
                [persons_csv],
                work / f"query-{name}.bundle",
                BundleKind.QUERY,
                application(args, code),
            )
        ids["push"] = seal(
            work, RS, [table], work / "push.bundle", BundleKind.DATA, {"resource": HOSTED}
        )

    clock.run("seal queries and push", seal_all)
    return {
        "stages": clock.stages,
        "ids": ids,
        "table_rows": table_rows,
        "table_persons": table_persons,
        "table_bytes": table.stat().st_size,
        "answer_bytes": answer.stat().st_size,
    }


class Pipeline:
    """The node's pipeline in this process, with the review and route of each bundle timed."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.work = work
        self.node = Node.open(work / "node")
        self.runner: Runner = node_runner(self.node)
        self.handover = handover_to(self.runner)
        workflow = self.runner.router
        assert isinstance(workflow, Workflow)
        self.workflow = workflow
        workflow.datasets.threads = args.threads
        self.review_s: dict[str, float] = {}
        self.route_s: dict[str, tuple[float, float]] = {}  # wall, CPU (all threads)
        review, route = workflow.review, workflow.route

        # Wrappers measure only: the Runner calls the Workflow's own methods through them.
        def timed_review(bundle: AcceptedBundle) -> dict[str, Any]:
            t0 = time.perf_counter()
            try:
                return review(bundle)
            finally:
                self.review_s[bundle.bundle_id] = time.perf_counter() - t0

        def timed_route(bundle: AcceptedBundle) -> RouteOutcome:
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return route(bundle)
            finally:
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                self.route_s[bundle.bundle_id] = (wall, cpu)

        workflow.review = timed_review  # type: ignore[method-assign]
        workflow.route = timed_route  # type: ignore[method-assign]

    def hand_over(self, dept: str, bundle: Path) -> str:
        """What the SFTP front does when an upload closes (untimed): the upload's id."""
        upload_id, partial = self.handover.new_partial()
        shutil.copyfile(bundle, partial)
        self.handover.accept_upload(
            upload_id=upload_id,
            dept=dept,
            partial=partial,
            file_name=bundle.name,
            remote_addr="127.0.0.1",
        )
        return upload_id

    def process(self, upload_id: str, bundle_id: str, expect: str) -> dict[str, Any]:
        """``Runner.process`` of one upload, timed; its steps (the Runner's part is the rest)."""
        t0, c0 = time.perf_counter(), time.process_time()
        state = self.runner.process(upload_id)
        total, cpu = time.perf_counter() - t0, time.process_time() - c0
        if state.value != expect:
            with self.node.session(write=False) as s:
                up = s.get(Upload, upload_id)
                why = f"{up.reason_code}: {up.reason_detail}" if up else "?"
            raise SystemExit(f"upload {upload_id} is {state.value}, not {expect} ({why})")
        steps = dict(self.workflow.timings.get(bundle_id, {}))
        review = self.review_s.get(bundle_id, 0.0)
        route, route_cpu = self.route_s.get(bundle_id, (0.0, 0.0))
        in_review = sum(v for k, v in steps.items() if k in ("open", "persons", "answer", "ingest"))
        return {
            "total": round(total, 3),
            "cpu": round(cpu, 3),
            "steps": steps,
            "review": round(review, 3),
            "route": round(route, 3),
            "route_cpu": round(route_cpu, 3),
            "review_other": round(review - in_review, 3),
            "route_other": round(route - (sum(steps.values()) - in_review), 3),
            "runner": round(total - review - route, 3),
        }

    def result_rows(self, query_id: str, segment: int, code: str) -> dict[str, Any]:
        """民政 opens result segment ``segment`` (untimed): its fields, report and row count."""
        bundle = self.runner.spool.outbox(MZ) / result_name(query_id, segment)
        fields, out = open_for(self.work, MZ, bundle, self.work / f"received-{query_id}")
        report = json.loads((out / "report.json").read_text(encoding="utf-8"))
        (entry,) = [r for r in report["resources"] if r["resource"] == code]
        (results,) = out.glob(f"{code}-results.*")
        src = (
            f"read_parquet({quote_literal(str(results))})"
            if results.suffix == ".parquet"
            else f"read_csv({quote_literal(str(results))}, header = true)"
        )
        (rows,) = duckdb.sql(f"SELECT count(*) FROM {src}").fetchone() or (0,)
        shutil.rmtree(out, ignore_errors=True)
        return {
            "final": fields["final"],
            "status": fields["status"],
            "state": entry["state"],
            "counts": {
                k: entry.get(k)
                for k in ("persons", "matched_persons", "no_record", "records", "households")
            },
            "result_rows": int(rows),
            "bundle_bytes": bundle.stat().st_size,
        }


def stage_relayed(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    gen = json.loads((work / "generate.json").read_text(encoding="utf-8"))
    pipe = Pipeline(args, work)
    qid = gen["ids"]["relayed"]
    query = pipe.process(pipe.hand_over(MZ, work / "query-relayed.bundle"), qid, "routed")

    # 人社 pulls the relay and answers it (untimed): the answer names the relayed persons
    rid = relay_id(qid, RELAYED)
    relay = pipe.runner.spool.outbox(RS) / relay_name(rid)
    fields, out = open_for(work, RS, relay, work / "relay-opened")
    assert fields["items"] == ITEMS and fields["resource"] == RELAYED, fields
    relayed_persons = int(fields["persons"])
    shutil.rmtree(out)
    response = work / "response.bundle"
    bid = seal(
        work,
        RS,
        [work / f"answer.{args.answer_format}"],
        response,
        BundleKind.RESPONSE,
        {"in_reply_to": rid, "resource": RELAYED},
    )
    upload_id = pipe.hand_over(RS, response)
    answer = pipe.process(upload_id, bid, "done")

    # after the timed run: the verification alone, and the engine's own stages (the pipeline
    # keeps only the step total), again on the same bundle and files
    t0 = time.perf_counter()
    verify(response, pipe.node.trust(), now=dt.datetime.now(dt.UTC))
    verify_s = time.perf_counter() - t0
    book, datasets = pipe.workflow.book, pipe.workflow.datasets
    catalog_version, request = book.request(qid, RELAYED)
    resource = book.catalog_resource(catalog_version, RELAYED)
    con = datasets.connect(work)
    try:
        _, again = merge_answer(
            con,
            resource,
            work / f"answer.{args.answer_format}",
            book.folder(qid) / "persons.parquet",
            work / "merge-again",
            items=request["items"],
            time_range=request["time_range"],
            fmt="parquet" if args.result_format == "parquet" else "csv",
            today=china_today(),
            threads=datasets.threads,
        )
    finally:
        con.close()
    shutil.rmtree(work / "merge-again")
    with pipe.node.session(write=False) as s:
        up = s.get(Upload, upload_id)
        assert up is not None and up.receipt_name is not None
    return {
        "query": query,
        "relay_persons": relayed_persons,
        "relay_bytes": relay.stat().st_size,
        "response_bytes": response.stat().st_size,
        "answer": answer,
        "verify_alone": round(verify_s, 3),
        "match_stages": again.timings,
        "result": pipe.result_rows(qid, 1, RELAYED),
    }


def stage_hosted(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    gen = json.loads((work / "generate.json").read_text(encoding="utf-8"))
    pipe = Pipeline(args, work)
    push = pipe.process(pipe.hand_over(RS, work / "push.bundle"), gen["ids"]["push"], "done")
    (version,) = pipe.workflow.datasets.versions(HOSTED)
    qid = gen["ids"]["hosted"]
    query = pipe.process(pipe.hand_over(MZ, work / "query-hosted.bundle"), qid, "done")
    return {
        "push": push,
        "stored": version.rows,
        "rejected": version.rejected,
        "query": query,
        "result": pipe.result_rows(qid, 1, HOSTED),
    }


def stage_plain(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The peer: bench/compare.py's hand-written DuckDB join, on the plain persons list and
    the answer table as 人社 sealed it (no checks, no encryption, no household summary)."""
    resource = load_catalog(work / "catalog.toml").resource(RELAYED)
    assert resource is not None and resource.time_item is not None
    return hand_join(
        work / "persons.parquet",
        work / "answer.parquet",
        work / "plain.parquet",
        resource.key_item,
        resource.time_item,
        args.threads,
    )


STAGES: dict[str, Callable[[argparse.Namespace, Path], dict[str, Any]]] = {
    "generate": stage_generate,
    "relayed": stage_relayed,
    "hosted": stage_hosted,
    "plain": stage_plain,
}


# ------------------------------------------------------------------------------ the parent


def run_child(stage: str, work: Path) -> tuple[dict[str, Any], float]:
    """bench/compare.py's :func:`run_child` for this script's stages."""
    return _run_child(stage, work, __file__)


def rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds / 1e6:.2f} M rows/s" if seconds > 0 else "-"


def show_steps(p: dict[str, Any], names: dict[str, str]) -> None:
    """The steps of one ``process``, in pipeline order, with what each covers."""
    lines = [("verify, receipt, audit (Runner)", p["runner"])]
    steps = p["steps"]
    review_steps = [k for k in ("open", "persons", "answer", "ingest") if k in steps]
    lines += [(names.get(k, k), steps[k]) for k in review_steps]
    lines.append(("review, other", p["review_other"]))
    lines += [(names.get(k, k), v) for k, v in steps.items() if k not in review_steps]
    lines.append(("route, other (relays, assign)", p["route_other"]))
    for name, seconds in lines:
        print(f"      {name:<36} {seconds:7.3f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--persons", type=count, default=1_000_000, help="persons in the query")
    ap.add_argument("--rows", type=count, default=1_000_000, help="rows of the provider's answer")
    ap.add_argument("--quick", action="store_true", help="20,000 persons x 20,000 rows")
    ap.add_argument("--catalog", type=Path, default=ROOT / "config" / "catalog.example.toml")
    ap.add_argument("--result-format", choices=("parquet", "csv"), default="parquet")
    ap.add_argument(
        "--answer-format",
        choices=("parquet", "csv"),
        default="parquet",
        help="the provider's answer as sealed: parquet (what exchange-client respond sends) or csv",
    )
    ap.add_argument("--threads", type=int, help="DuckDB threads (default: all cores)")
    ap.add_argument("--dir", type=Path, help="work folder parent (default: the temp folder)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--child", choices=sorted(STAGES), help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.persons, args.rows = 20_000, 20_000
    if args.child:
        assert args.work is not None
        out = STAGES[args.child](args, args.work)
        (args.work / f"{args.child}.json").write_text(json.dumps(out), encoding="utf-8")
        return

    work = Path(tempfile.mkdtemp(prefix="bench-relay-", dir=args.dir))
    threads = args.threads or len(os.sched_getaffinity(0))
    print(
        f"{args.persons:,} persons asked of {RELAYED} (relayed to {RS}) and of {HOSTED} "
        f"(hosted); the provider's table {args.rows:,} rows; results {args.result_format}; "
        f"{threads} threads; work in {work}",
        flush=True,
    )
    print(
        f"hosted comparison: catalog variant, {HOSTED} = a copy of {RELAYED} with "
        f'answered_by = "node" (written to {work / "catalog.toml"}), 人社 pushes the same table',
        flush=True,
    )
    try:
        make_pki(work / "pki")
        catalog_variant(args.catalog, work / "catalog.toml")
        make_node(work, work / "catalog.toml")
        rss: dict[str, float] = {}
        loads = [os.getloadavg()[0]]

        gen, rss["generate"] = run_child("generate", work)
        print(
            "generate  "
            + ", ".join(f"{k} {v:.1f} s" for k, v in gen["stages"].items())
            + f"; table {gen['table_rows']:,} rows for {gen['table_persons']:,} persons "
            f"({args.persons - gen['table_persons']:,} listed persons absent), "
            f"{gen['table_bytes'] / 1e6:,.0f} MB CSV; the answer sealed as {args.answer_format} "
            f"({gen['answer_bytes'] / 1e6:,.0f} MB)",
            flush=True,
        )

        loads.append(os.getloadavg()[0])
        rel, rss["relayed"] = run_child("relayed", work)
        loads.append(os.getloadavg()[0])
        q, a, r = rel["query"], rel["answer"], rel["result"]
        print(
            f"relayed   query -> relay for {RS} ({rel['relay_persons']:,} persons): "
            f"Runner.process {q['total']:.2f} s (review {q['review']:.2f} s, route "
            f"{q['route']:.2f} s)"
        )
        print(
            f"    answer: response bundle ({rel['response_bytes'] / 1e6:,.0f} MB) -> sealed "
            f"segment in {MZ}'s outbox: {a['total']:.3f} s = {rate(gen['table_rows'], a['total'])}"
            f" (CPU {a['cpu']:.2f} s); peak RSS {mib(rss['relayed'])}"
        )
        show_steps(
            a,
            {
                "open": "open (decrypt)",
                "answer": "answer (merge_answer: check, engine)",
                "place": "place (content into the segment)",
                "seal": "seal (segment to outbox)",
            },
        )
        print(
            f"      measured again after the run: pki.bundle.verify alone {rel['verify_alone']:.3f} s; "
            "merge_answer on the same table "
            + ", ".join(f"{k} {v:.2f} s" for k, v in rel["match_stages"].items())
        )
        c = r["counts"]
        print(
            f"    {MZ} received segment 1 (final {r['final']}, {r['status']}): "
            f"{c['persons']:,} persons, {c['matched_persons']:,} with records, "
            f"{c['no_record']:,} no record, {c['records']:,} records, {r['result_rows']:,} "
            f"result rows ({r['bundle_bytes'] / 1e6:,.0f} MB bundle)",
            flush=True,
        )

        hos, rss["hosted"] = run_child("hosted", work)
        loads.append(os.getloadavg()[0])
        p, q, h = hos["push"], hos["query"], hos["result"]
        match = q["steps"].get(f"match:{HOSTED}", 0.0)
        print(
            f"hosted    push of the same table for {HOSTED} (reference): Runner.process "
            f"{p['total']:.3f} s (open {p['steps'].get('open', 0):.3f}, ingest "
            f"{p['steps'].get('ingest', 0):.3f} s), {hos['stored']:,} rows stored, "
            f"{hos['rejected']:,} rejected"
        )
        print(
            f"    query: Runner.process {q['total']:.3f} s; route (accepted query -> sealed "
            f"segment) {q['route']:.3f} s = {rate(gen['table_rows'], q['route'])} "
            f"(CPU {q['route_cpu']:.2f} s); peak RSS {mib(rss['hosted'])}"
        )
        show_steps(q, {"open": "open (decrypt)", "persons": "persons (list check)"})
        c = h["counts"]
        print(
            f"    {MZ} received segment 1 (final {h['final']}, {h['status']}): "
            f"{c['persons']:,} persons, {c['matched_persons']:,} with records, "
            f"{c['no_record']:,} no record, {c['records']:,} records, {h['result_rows']:,} "
            f"result rows ({h['bundle_bytes'] / 1e6:,.0f} MB bundle)",
            flush=True,
        )
        if (r["result_rows"], r["counts"]) != (h["result_rows"], h["counts"]):
            print("WARNING: the relayed and hosted results differ")
        plain, rss["duckdb-sql"] = run_child("plain", work)
        loads.append(os.getloadavg()[0])
        print(
            f"duckdb-sql the hand-written join (bench/compare.py) on the plain persons list and "
            f"answer table: {plain['seconds']:.3f} s = {rate(gen['table_rows'], plain['seconds'])}"
            f", {plain['rows']:,} result rows (no checks, no encryption, no household summary)",
            flush=True,
        )
        if plain["rows"] != r["result_rows"]:
            print("WARNING: the hand-written join and the node's answer differ in rows")

        merge = a["steps"].get("answer", 0.0)
        print("\nsummary")
        print(
            f"  relayed answer work (process of the response)  {a['total']:7.3f} s  "
            f"{rate(gen['table_rows'], a['total'])}  CPU {a['cpu']:.2f} s"
        )
        print(
            f"  hosted answer (route of the query)              {q['route']:7.3f} s  "
            f"{rate(gen['table_rows'], q['route'])}  CPU {q['route_cpu']:.2f} s"
        )
        print(
            f"  hosted incl. the push of its data               {q['route'] + p['total']:7.3f} s  "
            f"{rate(gen['table_rows'], q['route'] + p['total'])}"
        )
        print(
            f"  ratio relayed / hosted (time): whole {a['total'] / q['route']:.2f}x; "
            f"answer (check and merge) {merge:.3f} s / match {match:.3f} s = {merge / match:.2f}x; "
            f"relayed / hosted incl. push {a['total'] / (q['route'] + p['total']):.2f}x"
        )
        print(f"  ratio relayed / hosted (CPU): {a['cpu'] / q['route_cpu']:.2f}x")
        print(
            f"  ratio relayed / duckdb-sql (time): {a['total'] / plain['seconds']:.2f}x; the "
            f"hand-written join alone runs at {rate(gen['table_rows'], plain['seconds'])}"
        )
        print("  peak RSS by process: " + ", ".join(f"{k} {mib(v)}" for k, v in rss.items()))
        print(
            "  load average (1 min) before generate, relayed, hosted, duckdb-sql and after: "
            + ", ".join(f"{x:.1f}" for x in loads)
        )
        full = (args.persons, args.rows) == (1_000_000, 1_000_000)
        print("goal" if full else "goal (set for 1,000,000 x 1,000,000: fixed costs weigh more)")
        ok = gen["table_rows"] / a["total"] >= GOAL_ROWS_S
        print(f"  relayed answer >= 1,000,000 rows/s: {'met' if ok else 'NOT met'}")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
