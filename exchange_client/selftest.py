"""``exchange-client selftest``: the department's admission probe (部省 第六条).

Runs what a department must pass before it is admitted, and again when a ministry operator
inspects it, and prints a report to file (:mod:`exchange_common.report`):

1. the client directory and credentials (the key fits the certificate; the node pin);
2. the department's own certificate: chain to the ministry root, the CRL, its validity left;
3. the pinned node certificate;
4. this machine's address toward the node, against the certificate's registered networks
   (a warning only: a NAT may stand between);
5. login to the node (SFTP, host key pinned) and its outbox;
6. a round trip: a sealed ``probe`` bundle uploaded, and the node's signed receipt pulled,
   verified and ``accepted``.

A check that cannot run because an earlier one failed is ``skip``. Nothing personal is sent or
shown: the probe carries one line of text naming the department and the time.
"""

from __future__ import annotations

import datetime as dt
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from exchange_client.config import ClientConfig, load_config
from exchange_client.credentials import (
    Credentials,
    check_node_certificate,
    load_credentials,
)
from exchange_client.push import seal_files, upload_bundle, wait_for_receipt
from exchange_client.transport import Session, run_with_node
from exchange_common.errors import ExchangeError
from exchange_common.net import in_networks
from exchange_common.report import Check, Verdict
from pki.bundle import BundleKind
from pki.identity import CertifiedIdentity, Role
from pki.standing import EXPIRY_WARNING_DAYS, certificate_standing
from pki.verify import verify_certificate

__all__ = ["SCHEMA", "run_selftest"]

SCHEMA = "exchange-selftest/1"


def _fail(name: str, e: BaseException) -> Check:
    text = e.message if isinstance(e, ExchangeError) else f"{type(e).__name__}: {e}"
    code = f" ({e.code})" if isinstance(e, ExchangeError) else ""
    return Check(name, Verdict.FAIL, f"{text}{code}")


def _own_certificate(creds: Credentials, now: dt.datetime) -> tuple[Check, CertifiedIdentity]:
    ident = verify_certificate(
        creds.cert, creds.trust, now=now, chain=creds.chain[1:], role=Role.DEPARTMENT
    )
    standing = certificate_standing(creds.cert, creds.trust, now, issuers=creds.chain[1:])
    verdict = Verdict.WARN if standing.days_left < EXPIRY_WARNING_DAYS else Verdict.PASS
    return (
        Check(
            "own certificate",
            verdict,
            f"{ident.code} {ident.name}, serial {ident.serial}, chains to the ministry root, "
            f"not revoked; {standing.describe()}",
        ),
        ident,
    )


def _local_address(cfg: ClientConfig) -> str:
    """The address this machine uses toward the node (a UDP socket, no packet sent)."""
    family = socket.AF_INET6 if ":" in cfg.node_host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect((cfg.node_host, cfg.node_port))
        return str(s.getsockname()[0])


def _address(cfg: ClientConfig, ident: CertifiedIdentity) -> Check:
    try:
        local = _local_address(cfg)
    except OSError as e:
        return Check("address", Verdict.WARN, f"cannot tell this machine's address: {e}")
    nets = ", ".join(str(n) for n in ident.networks)
    if in_networks(local, ident.networks):
        return Check("address", Verdict.PASS, f"{local} is in the registered networks ({nets})")
    return Check(
        "address",
        Verdict.WARN,
        f"{local} is not in the registered networks ({nets}): the node refuses it unless a "
        "NAT presents a registered address",
    )


def _login(cfg: ClientConfig) -> Check:
    async def look(session: Session) -> int:
        return len(await session.outbox())

    waiting = run_with_node(cfg, look, retries=0)
    how = "its ministry certificate (X.509)" if cfg.login == "x509" else "its SSH key"
    return Check(
        "login",
        Verdict.PASS,
        f"logged in to {cfg.node_host}:{cfg.node_port} with {how}, host key as pinned; "
        f"{waiting} file(s) waiting in the outbox",
    )


def _round_trip(cfg: ClientConfig, creds: Credentials, now: dt.datetime, timeout: float) -> Check:
    with tempfile.TemporaryDirectory(prefix=".selftest-", dir=cfg.dir) as work:
        note = Path(work) / "selftest.txt"
        note.write_text(
            f"exchange-client selftest of {cfg.dept} at {now.isoformat(timespec='seconds')}\n",
            "utf-8",
        )
        sealed = seal_files(cfg, creds, [note], BundleKind.PROBE, {"probe": "selftest"}, now=now)
    started = time.monotonic()
    upload_bundle(cfg, sealed, retries=0)
    rec, _ = wait_for_receipt(
        cfg, creds, sealed.record.bundle_id, cfg.dir / "received", timeout=timeout, retries=0
    )
    took = time.monotonic() - started
    if rec.verdict != "accepted":
        return Check(
            "round trip",
            Verdict.FAIL,
            f"probe {rec.bundle_id} was rejected by the node ({rec.reason_code})",
        )
    return Check(
        "round trip",
        Verdict.PASS,
        f"probe {rec.bundle_id} sealed, uploaded and accepted; the node's signed receipt "
        f"verified, in {took:.1f} s",
    )


def run_selftest(
    directory: Path, *, now: dt.datetime, timeout: float
) -> tuple[dict[str, Any], list[Check]]:
    """Run every check in order; return the report's facts and the checks. Never raises for
    a failing check: its error becomes the check's detail and later checks that need it are
    ``skip``. Raises only for a directory that is not a client directory (``InputError``)."""
    cfg = load_config(directory)
    facts: dict[str, Any] = {
        "department": cfg.dept,
        "node": f"{cfg.node_host}:{cfg.node_port}",
        "login": cfg.login,
    }
    checks: list[Check] = []
    try:
        creds = load_credentials(cfg)
        checks.append(Check("credentials", Verdict.PASS, "the key fits the certificate"))
    except ExchangeError as e:
        checks.append(_fail("credentials", e))
        skipped = ("own certificate", "node certificate", "address", "login", "round trip")
        return facts, checks + [Check(n, Verdict.SKIP, "needs credentials") for n in skipped]
    ident: CertifiedIdentity | None = None
    try:
        check, ident = _own_certificate(creds, now)
        checks.append(check)
    except ExchangeError as e:
        checks.append(_fail("own certificate", e))
    try:
        node = check_node_certificate(creds, now)
        checks.append(
            Check(
                "node certificate",
                Verdict.PASS,
                f"{node.code} {node.name}, pinned (SHA-256 {cfg.node_fingerprint[:16]}…), valid",
            )
        )
    except ExchangeError as e:
        checks.append(_fail("node certificate", e))
    checks.append(
        _address(cfg, ident)
        if ident is not None
        else Check("address", Verdict.SKIP, "needs a valid own certificate")
    )
    try:
        checks.append(_login(cfg))
    except ExchangeError as e:
        checks.append(_fail("login", e))
        return facts, [*checks, Check("round trip", Verdict.SKIP, "needs a login")]
    if any(c.verdict is Verdict.FAIL for c in checks):
        return facts, [*checks, Check("round trip", Verdict.SKIP, "a check above failed")]
    try:
        checks.append(_round_trip(cfg, creds, now, timeout))
    except ExchangeError as e:
        checks.append(_fail("round trip", e))
    return facts, checks
