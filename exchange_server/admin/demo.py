"""The end-to-end demonstration behind the README's first command.

It builds a throw-away world in one folder: a test ministry CA, a node certificate and two
departments (民政 MZ330100, 人社 RS330100), a CRL, and then runs the node's main job as far as
it is built today. Each step prints one line; the folder is left for the user to explore.
Everything here is test material: keys are unencrypted and must never be used for real data.
"""

# The demo's SQL is built from its own constants and quoted paths only.
# ruff: noqa: S608

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh
import duckdb

from exchange_common.catalog import load_catalog
from exchange_common.errors import TransportError
from exchange_common.fs import atomic_write
from exchange_common.tables.sql import quote_literal
from exchange_server.admin.home import create_home
from exchange_server.data.catalog import CatalogStore
from exchange_server.data.synthetic import persons_sql, write_dataset
from exchange_server.node import Node
from exchange_server.pipeline.stages import parse_timings
from exchange_server.store.registry import add_department
from pki.ca import CertificateAuthority
from pki.identity import DeptCode, Role, parse_networks
from pki.keys import certificate_pem, load_certificates, private_key_pem
from pki.verify import TrustStore, load_crls, verify_certificate

__all__ = ["DEMO_DEPARTMENTS", "DemoResult", "run_demo"]

#: (code, name, role) of the parties the demo creates.
DEMO_DEPARTMENTS: tuple[tuple[str, str, Role], ...] = (
    ("NODE01", "杭州市社会救助核对节点", Role.NODE),
    ("MZ330100", "杭州市民政局", Role.DEPARTMENT),
    ("RS330100", "杭州市人力资源和社会保障局", Role.DEPARTMENT),
)


@dataclass
class DemoResult:
    """What the demo made, for the caller to print or check."""

    root: Path
    steps: list[str] = field(default_factory=list)
    not_built: list[str] = field(default_factory=list)


def run_demo(root: Path, *, say: Callable[[str], None] = print, fresh: bool = False) -> DemoResult:
    """Build the demo world under ``root`` and run every stage that exists.

    With ``fresh`` an existing demo folder is removed first; otherwise an existing one is an
    error (the caller decides), so a user's exploration is never overwritten silently.
    """
    root = Path(root)
    if root.exists() and fresh:
        shutil.rmtree(root)
    result = DemoResult(root=root)

    def step(text: str) -> None:
        result.steps.append(text)
        say(f"  ✓ {text}")

    root.mkdir(parents=True, exist_ok=False)
    ca_dir = root / "ca"
    ca = CertificateAuthority.init(ca_dir, "演示部收入认定中心 (demo)", passphrase=None)
    step(f"test ministry CA created: {ca_dir / 'root.pem'}")
    certs = root / "certs"
    certs.mkdir()
    for code, name, role in DEMO_DEPARTMENTS:
        issued = ca.issue(DeptCode(code), name, parse_networks(["127.0.0.1"]), role=role)
        assert issued.key is not None
        atomic_write(certs / f"{code}.key", private_key_pem(issued.key, None), 0o600)
        atomic_write(certs / f"{code}.pem", certificate_pem(issued.chain))
        step(f"{role.value} certificate issued: {code} {name} (serial {issued.record.serial})")
    ca.crl()
    step(f"CRL published: {ca_dir / 'crl.pem'}")
    trust = TrustStore((ca.root,), ca.chain, tuple(load_crls(ca_dir / "crl.pem")))
    now = dt.datetime.now(dt.UTC)
    for code, _, role in DEMO_DEPARTMENTS:
        cert_path = certs / f"{code}.pem"
        chain = load_certificates(cert_path)
        ident = verify_certificate(chain[0], trust, now=now, chain=chain[1:], role=role)
        line = f"{code} verified by the node's verifier"
        if shutil.which("openssl"):
            proc = subprocess.run(
                [
                    "openssl",
                    "verify",
                    "-CAfile",
                    str(ca_dir / "root.pem"),
                    "-crl_check",
                    "-CRLfile",
                    str(ca_dir / "crl.pem"),
                    str(cert_path),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            line += " and by stock OpenSSL" if proc.returncode == 0 else " (OpenSSL disagrees!)"
        step(f"{line}; registered network {', '.join(str(n) for n in ident.networks)}")
    ca.close()
    _run_node_stage(root, ca_dir, certs, step)
    result.not_built = [
        "revocation, recheck, objection and detail queries (the rest of the procedure)",
        "the catalog offered to departments over SFTP, and vectorised validation at the client",
    ]
    return result


#: The demo's 人社 dataset covers persons 0 .. DEMO_POPULATION-1 of the synthetic population.
DEMO_POPULATION = 400
#: 民政's applicants: persons 0..5 (most have records) and four from outside the population.
DEMO_PERSONS = 10


def _write_demo_data(data: Path) -> Path:
    """Synthetic 人社 records, 民政's persons list and query application under ``data``."""
    data.mkdir()
    catalog = load_catalog(Path(__file__).resolve().parents[2] / "config" / "catalog.example.toml")
    resource = catalog.resource("RS-SI-01")
    assert resource is not None
    write_dataset(
        data / "rs_social_insurance.csv",
        resource,
        DEMO_POPULATION * 3,
        population=DEMO_POPULATION,
        seed=7,
    )
    inside, outside = 6, DEMO_PERSONS - 6
    listed = (
        f"SELECT * FROM ({persons_sql(inside, seed=7)}) "
        f"UNION ALL SELECT * FROM ({persons_sql(outside, seed=7, start=100_000)})"
    )
    con = duckdb.connect()
    try:
        con.execute(
            "COPY (SELECT id_number AS 身份证号, name AS 姓名, household_id AS 户编号, "
            "'SQ2026-' || lpad(CAST(row_number() OVER () AS VARCHAR), 4, '0') AS 授权编号 "
            f"FROM ({listed})) TO {quote_literal(str(data / 'persons.csv'))} (FORMAT csv, HEADER)"
        )
    finally:
        con.close()
    application = {
        "business_type": "低保",
        "persons": DEMO_PERSONS,
        # RS-SI-01 is answered by the node from 人社's pushed data; RS-JY-01 人社 keeps, so the
        # node relays it to 人社 with a deadline in working days
        "resources": [{"code": "RS-SI-01", "time_range": ""}, {"code": "RS-JY-01"}],
        "purpose": "最低生活保障家庭经济状况核对",
    }
    (data / "application.json").write_text(
        json.dumps(application, ensure_ascii=False), encoding="utf-8"
    )
    return data


def _wait_for(client_dir: Path, kind: str, timeout: float = 120.0) -> dict[str, Any]:
    """Pull until a bundle of ``kind`` arrives; return its pull outcome (``opened_to`` …)."""
    deadline = time.monotonic() + timeout
    while True:
        pulled = _client(["pull", "--dir", str(client_dir)])
        for o in pulled.get("pulled", []):
            if o.get("kind") == kind and o.get("status") == "opened":
                found: dict[str, Any] = o
                return found
        if time.monotonic() > deadline:
            raise TransportError(f"no {kind} arrived from the demo node", code="E_DEMO")
        time.sleep(0.5)


def _answer_relay(relay_dir: Path, answer: Path) -> int:
    """人社's answer to the relay (synthetic 就业失业登记 records for some of the persons asked);
    the number of persons answered."""
    con = duckdb.connect()
    try:
        persons = quote_literal(str(relay_dir / "persons.csv"))
        con.execute(
            "COPY (SELECT 公民身份号码, CASE WHEN hash(公民身份号码) % 3 = 0 THEN '失业' ELSE '就业' "
            "END AS 就业状态, CASE WHEN hash(公民身份号码) % 3 = 0 THEN NULL ELSE '杭州某企业' END "
            "AS 就业单位名称, DATE '2026-06-01' AS 登记日期 FROM read_csv("
            f"{persons}, header = true, all_varchar = true) WHERE hash(公民身份号码) % 5 <> 0) "
            f"TO {quote_literal(str(answer))} (FORMAT csv, HEADER)"
        )
        row = con.execute(
            f"SELECT count(*) FROM read_csv({quote_literal(str(answer))}, header = true)"
        ).fetchone()
    finally:
        con.close()
    return int(row[0]) if row else 0


def _describe_result(result_dir: Path) -> list[str]:
    """Lines about the result: hits, misses and the household summary (no names, no IDs)."""
    report = json.loads((result_dir / "report.json").read_text(encoding="utf-8"))
    lines = []
    for r in report["resources"]:
        if "persons" not in r:  # not answered in this segment
            due = f", due {r['due_date']} (Asia/Shanghai)" if r.get("due_date") else ""
            where = f" in segment {r['segment']}" if r.get("segment") else ""
            lines.append(
                f"{r['resource']}: {r['state']}{where} (answered by {r['answered_by']}, "
                f"{r['provider']}){due}"
            )
            continue
        lines.append(
            f"{r['resource']} answered by {r['answered_by']}: {r['persons']} persons, {r['matched_persons']} with "
            f"records ({r['records']} records, latest per person), {r['no_record']} with no "
            f"record; items released: {', '.join(r['items'])}"
        )
        con = duckdb.connect()
        try:
            path = quote_literal(str(result_dir / f"{r['resource']}-households.csv"))
            rows = con.execute(
                f"SELECT * FROM read_csv({path}, header = true, all_varchar = true)"
            ).fetchall()
            names = [d[0] for d in con.description or []]
        finally:
            con.close()
        lines.append("household summary (" + " | ".join(names) + "):")
        lines.extend("    " + " | ".join("-" if v is None else str(v) for v in row) for row in rows)
    return lines


def _start_node(home: Path, log: Path) -> tuple[subprocess.Popen[str], int, str]:
    cmd = [
        sys.executable,
        "-c",
        "from exchange_server.admin.cli import main; main()",
        "serve",
        "--home",
        str(home),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--monitor",
        "127.0.0.1:0",
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    monitor = ""
    line = proc.stdout.readline().strip()
    if line.startswith("monitor on "):
        monitor = line.split(" ", 2)[2]
        line = proc.stdout.readline().strip()
    if not line.startswith("listening on ") or not monitor:
        proc.kill()
        raise TransportError(f"the demo node did not start; see {log}", code="E_START")
    return proc, int(line.rsplit(":", 1)[1]), monitor


def _client(args: list[str], *, check_exit: tuple[int, ...] = (0,)) -> dict[str, Any]:
    """Run ``exchange-client ARGS --json`` as a department operator would; return its JSON."""
    out = _cli("exchange_client.cli", [*args, "--json"], check_exit=check_exit, timeout=120)
    result: dict[str, Any] = json.loads(out) if out.strip() else {}
    return result


def _run_node_stage(root: Path, ca_dir: Path, certs: Path, step: Callable[[str], None]) -> None:
    """Init a node home, register 民政 and 人社, serve on loopback, push two bundles."""
    home = root / "node"
    create_home(
        home,
        trust=ca_dir / "root.pem",
        cert=certs / "NODE01.pem",
        key=certs / "NODE01.key",
        crl=ca_dir / "crl.pem",
    )
    ssh_key = asyncssh.generate_private_key("ssh-ed25519")
    atomic_write(certs / "RS330100_ssh", ssh_key.export_private_key(), 0o600)
    atomic_write(certs / "RS330100_ssh.pub", ssh_key.export_public_key())
    node = Node.open(home)
    now = dt.datetime.now(dt.UTC)
    with node.session() as s:
        for code, keys in (("MZ330100", []), ("RS330100", [ssh_key.export_public_key().decode()])):
            add_department(
                s,
                code,
                name=None,
                certificate=load_certificates(certs / f"{code}.pem"),
                trust=node.trust(),
                ssh_keys=keys,
                quota_bytes=1 << 30,
                now=now,
                actor="demo",
            )
    node.engine.dispose()
    step(f"node home created and 民政, 人社 registered: {home}")

    catalog_file = Path(__file__).resolve().parents[2] / "config" / "catalog.example.toml"
    version, _ = CatalogStore.for_home(home).publish(catalog_file)
    step(f"resource catalog published as v{version.version} (config/catalog.example.toml)")
    data = _write_demo_data(root / "data")
    step(
        f"synthetic data written to {data}: 人社 social insurance records (RS-SI-01) for "
        f"{DEMO_POPULATION} persons, and 民政's list of {DEMO_PERSONS} applicants with their "
        "authorization references"
    )

    proc, port, monitor = _start_node(home, root / "node.log")
    try:
        step(
            f"node serving SFTP on 127.0.0.1:{port} (log: {root / 'node.log'}); its status page "
            f"and /metrics at {monitor}"
        )
        clients = root / "clients"
        for code in ("RS330100", "MZ330100"):
            login = ["--ssh-key", str(certs / f"{code}_ssh")] if code == "RS330100" else []
            _client(
                [
                    "init",
                    "--dir",
                    str(clients / code),
                    "--dept",
                    code,
                    "--node-host",
                    "127.0.0.1",
                    "--node-port",
                    str(port),
                    "--trust",
                    str(ca_dir / "root.pem"),
                    "--crl",
                    str(ca_dir / "crl.pem"),
                    "--cert",
                    str(certs / f"{code}.pem"),
                    "--key",
                    str(certs / f"{code}.key"),
                    "--node-cert",
                    str(certs / "NODE01.pem"),
                    *login,
                ]
            )
        for code in ("RS330100", "MZ330100"):
            # the published catalog at the department: pushes are checked against it, with the
            # node's own rules, before anything is sealed
            atomic_write(clients / code / "catalog.toml", catalog_file.read_bytes())
        step(
            f"exchange-client set up for 人社 (SSH-key login) and 民政 (X.509 login), each with "
            f"the published catalog (tables are checked by the node's rules before sealing): "
            f"{clients}"
        )
        for code, args in (
            (
                "RS330100",
                [
                    "--kind",
                    "data",
                    "--field",
                    "resource=RS-SI-01",
                    "--field",
                    "mode=full",
                    str(data / "rs_social_insurance.csv"),
                ],
            ),
            (
                "MZ330100",
                [
                    "--kind",
                    "query",
                    "--fields-json",
                    str(data / "application.json"),
                    str(data / "persons.csv"),
                ],
            ),
        ):
            pushed = _client(
                ["push", "--dir", str(clients / code), "--wait", *args], check_exit=(0, 1)
            )
            step(
                f"{code} pushed a {pushed['kind']} bundle with exchange-client: node receipt "
                f"{pushed['verdict']} (bundle {pushed['bundle_id']})"
            )
            if pushed["verdict"] != "accepted":
                raise TransportError(
                    f"the node refused the demo {pushed['kind']} bundle: "
                    f"{pushed.get('reason_code')}",
                    code="E_DEMO",
                )
        mz, rs = clients / "MZ330100", clients / "RS330100"
        first = _wait_for(mz, "result")
        step(f"民政 pulled result segment 1, signed by the node: {first['summary']}")
        for line in _describe_result(Path(first["opened_to"])):
            step(line)
        relay = _wait_for(rs, "relay")
        step(f"人社 pulled the node's relay {relay['bundle_id']}: {relay['summary']}")
        answer = root / "data" / "rs_employment_answer.csv"
        answered = _answer_relay(Path(relay["opened_to"]), answer)
        responded = _client(
            ["respond", "--dir", str(rs), "--to-query", relay["bundle_id"], "--wait", str(answer)],
            check_exit=(0, 1),
        )
        step(
            f"人社 answered it with exchange-client respond ({answered} persons with records): "
            f"node receipt {responded['verdict']}"
        )
        if responded["verdict"] != "accepted":
            raise TransportError(
                f"the node refused the demo answer: {responded.get('reason_code')}", code="E_DEMO"
            )
        last = _wait_for(mz, "result")
        step(f"民政 pulled result segment 2: {last['summary']}")
        for line in _describe_result(Path(last["opened_to"])):
            step(line)
        query_id = next(
            r["bundle_id"]
            for r in _client(["status", "--dir", str(mz)]).get("pushed", [])
            if r.get("kind") == "query"
        )
        status = _client(["status", "--dir", str(mz), query_id])
        step(
            f"exchange-client status of the query: {status['state']}; "
            + "; ".join(
                f"{r['resource']} {r['state']} (answered by {r['answered_by']})"
                for r in status["resources"]
            )
        )
        for code in ("RS330100", "MZ330100"):
            status = _client(["status", "--dir", str(clients / code)])
            for rec in status.get("pulled", []):
                if rec.get("kind") != "receipt":
                    continue
                step(
                    f"{code} holds the node's signed receipt for bundle "
                    f"{rec.get('receipt_for')}: {rec.get('verdict')} "
                    f"(opened in {clients / code / 'received' / 'receipt'})"
                )
        step(_stage_summary(root / "node.log"))
        with urllib.request.urlopen(monitor + "status.json", timeout=30) as answer:  # noqa: S310
            seen = json.load(answer)
        step(
            "the monitor's /status.json: uploads "
            + ", ".join(f"{k} {v}" for k, v in sorted(seen["uploads"]["by_state"].items()))
            + f", pipeline "
            f"{'ok' if seen['pipeline']['healthy'] else 'not keeping up'}, "
            f"{seen['audit']['events']} audit events"
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    _audit_stage(root, home, ca_dir, step)


def _audit_stage(root: Path, home: Path, ca_dir: Path, step: Callable[[str], None]) -> None:
    """The inspector's view: the trail verified on the node (the shutdown signed a checkpoint),
    then 民政's extract exported and verified offline with nothing but the ministry root."""
    verify = _cli("exchange_server.admin.cli", ["audit", "verify", "--home", str(home), "--json"])
    doc = json.loads(verify)
    step(
        f"exchange-server audit verify: {doc['events']} events intact under "
        f"{doc['checkpoints']} signed checkpoint(s), the newest over "
        f"{doc['newest_checkpoint']['size']} events (published in {home / 'audit' / 'checkpoint'})"
    )
    extract = root / "audit-MZ330100.json"
    args = ["audit", "export", "--home", str(home), "--department", "MZ330100", "-o", str(extract)]
    _cli("exchange_server.admin.cli", args)
    checked = json.loads(
        _cli(
            "pki.cli",
            ["audit", "verify", str(extract), "--trust", str(ca_dir / "root.pem"), "--json"],
        )
    )
    step(
        f"民政's audit extract ({extract.name}, {checked['events']} events with Merkle proofs) "
        f"verified offline by exchange-pki audit verify, signed by {checked['signer']}"
    )


def _cli(
    module: str, args: list[str], *, check_exit: tuple[int, ...] = (0,), timeout: float = 300
) -> str:
    """Run one of the product's CLIs (``module``'s ``main``) as its user would; its stdout.
    Raises ``TransportError`` E_DEMO naming the command when it exits otherwise."""
    cmd = [sys.executable, "-c", f"from {module} import main; main()", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=timeout)
    if proc.returncode not in check_exit:
        name = {"exchange_client.cli": "exchange-client", "pki.cli": "exchange-pki"}.get(
            module, "exchange-server"
        )
        raise TransportError(
            f"{name} {args[0]} failed ({proc.returncode}): {proc.stderr.strip()}", code="E_DEMO"
        )
    return proc.stdout


def _stage_summary(log: Path) -> str:
    """One line on where the pipeline spent its time, from its timings lines in ``log``."""
    lines = [t for t in map(parse_timings, log.read_text("utf-8", "replace").splitlines()) if t]
    if not lines:
        return "the node logged no stage timings"
    stages = {k for t in lines for k in t if k not in {"total", "queued"}}
    median = {k: statistics.median(t.get(k, 0.0) for t in lines) for k in stages}
    slowest = max(median, key=lambda k: median[k])
    total = statistics.median(t.get("total", 0.0) for t in lines)
    return (
        f"the pipeline timed each of its {len(lines)} uploads by stage ({log.name}): median "
        f"{total:.0f} ms in all, the longest stage {slowest} ({median[slowest]:.0f} ms)"
    )
