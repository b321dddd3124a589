"""The end-to-end demonstration behind the README's first command.

It builds a throw-away world in one folder: a test ministry CA, a node certificate and two
departments (民政 MZ330100, 人社 RS330100), a CRL, and then runs the node's main job as far as
it is built today. Each step prints one line; the folder is left for the user to explore.
Everything here is test material: keys are unencrypted and must never be used for real data.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

from exchange_server.home import create_home
from exchange_server.node import Node
from exchange_server.registry import add_department
from pki._fs import atomic_write
from pki.ca import CertificateAuthority
from pki.errors import TransportError
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
        "relayed queries and results (issues 5 and 6): exchange-client respond, result bundles",
        "the comparison engine (issue 6): the 民政 query is answered from the 人社 dataset",
    ]
    return result


def _synthetic_id(rng: random.Random) -> str:
    """A made-up citizen ID number with a valid GB 11643 check character (not a real person)."""
    body = f"330102{rng.randint(1940, 2005)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    body += f"{rng.randint(0, 999):03d}"
    weights = [2 ** (17 - i) % 11 for i in range(17)]
    check = (12 - sum(int(c) * w for c, w in zip(body, weights, strict=True)) % 11) % 11
    return body + ("X" if check == 10 else str(check))


def _start_node(home: Path, log: Path) -> tuple[subprocess.Popen[str], int]:
    cmd = [
        sys.executable,
        "-c",
        "from exchange_server.cli import main; main()",
        "serve",
        "--home",
        str(home),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
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
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on "):
        proc.kill()
        raise TransportError(f"the demo node did not start; see {log}", code="E_START")
    return proc, int(line.rsplit(":", 1)[1])


def _client(args: list[str], *, check_exit: tuple[int, ...] = (0,)) -> dict[str, Any]:
    """Run ``exchange-client ARGS --json`` as a department operator would; return its JSON."""
    cmd = [sys.executable, "-c", "from exchange_client.cli import main; main()", *args, "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
    if proc.returncode not in check_exit:
        raise TransportError(
            f"exchange-client {args[0]} failed ({proc.returncode}): {proc.stderr.strip()}",
            code="E_DEMO",
        )
    result: dict[str, Any] = json.loads(proc.stdout) if proc.stdout.strip() else {}
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

    data = root / "data"
    data.mkdir()
    rs_csv = "参保地行政区划代码,参保单位名称,险种类型,参保人数\n330102,杭州示例科技有限公司,基本养老,12\n"
    rng = random.Random(11643)  # noqa: S311 - synthetic demo data, not cryptography
    persons = "身份证号,姓名,家庭编号\n" + "".join(
        f"{_synthetic_id(rng)},测试{i},H{i // 2:03d}\n" for i in range(4)
    )
    (data / "rs_social_insurance.csv").write_text(rs_csv, encoding="utf-8")
    (data / "persons.csv").write_text(persons, encoding="utf-8")
    application = {
        "business_type": "低保",
        "persons": 4,
        "resources": ["RS-SI-001"],
        "time_range": "",
        "purpose": "最低生活保障家庭经济状况核对",
    }
    (data / "application.json").write_text(
        json.dumps(application, ensure_ascii=False), encoding="utf-8"
    )

    proc, port = _start_node(home, root / "node.log")
    try:
        step(f"node serving SFTP on 127.0.0.1:{port} (log: {root / 'node.log'})")
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
        step(f"exchange-client set up for 人社 (SSH-key login) and 民政 (X.509 login): {clients}")
        for code, args in (
            (
                "RS330100",
                [
                    "--kind",
                    "data",
                    "--field",
                    "resource=RS-SI-001",
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
        for code in ("RS330100", "MZ330100"):
            _client(["pull", "--dir", str(clients / code)])  # anything else in the outbox
            status = _client(["status", "--dir", str(clients / code)])
            for rec in status.get("pulled", []):
                step(
                    f"{code} holds the node's signed receipt for bundle "
                    f"{rec.get('receipt_for')}: {rec.get('verdict')} "
                    f"(opened in {clients / code / 'received' / 'receipt'})"
                )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
