"""The end-to-end demonstration behind the README's first command.

It builds a throw-away world in one folder: a test ministry CA, a node certificate and two
departments (民政 MZ330100, 人社 RS330100), a CRL, and then runs the node's main job as far as
it is built today. Each step prints one line; the folder is left for the user to explore.
Everything here is test material: keys are unencrypted and must never be used for real data.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pki._fs import atomic_write
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
    result.not_built = [
        "sealed bundles (issue 3): 人社 seals a dataset for the node",
        "the SFTP node (issue 4): departments upload bundles and get signed receipts",
        "the department client (issue 5): 民政 pushes a query and pulls the result",
        "the comparison engine (issue 6): the query is answered from the 人社 dataset",
    ]
    return result
