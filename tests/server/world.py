"""A small test world: a CA, a node home and two registered departments, in a temp folder.

Used by the pipeline tests (in-process). Integration tests that need a running node use
tests/integration/node_harness.py instead.
"""

from __future__ import annotations

import datetime as dt
import io
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from exchange_common.fs import atomic_write
from exchange_server.admin.home import create_home
from exchange_server.node import Node
from exchange_server.pipeline.assembly import handover_to
from exchange_server.pipeline.handover import Handover
from exchange_server.pipeline.router import AcceptedBundle, RouteOutcome
from exchange_server.pipeline.runner import Runner
from exchange_server.spool import Spool
from exchange_server.store.registry import add_department
from pki.bundle import Member, seal_to_file
from pki.ca import IssuedCertificate
from pki.identity import Role
from pki.keys import certificate_pem, private_key_pem
from tests.conftest import CAFixture


class KeepRouter:
    """The router of pipeline tests that exercise the generic path (verification, registry,
    replay, receipts, recovery) rather than the catalog: reviews nothing, keeps data, and
    leaves every other kind waiting. Never used by a node: its router is the Workflow."""

    def review(self, bundle: AcceptedBundle) -> dict[str, Any]:
        """No review: nothing to report."""
        return {}

    def route(self, bundle: AcceptedBundle) -> RouteOutcome:
        """``data`` is done once stored; the other kinds wait."""
        return RouteOutcome.DONE if bundle.kind == "data" else RouteOutcome.WAITING

    def settle(self) -> None:
        """Nothing to repair."""


@dataclass
class World:
    """Everything a pipeline test needs."""

    tmp: Path
    ca: CAFixture
    node: Node
    #: The pipeline runner (with :class:`KeepRouter` unless a test sets another router).
    ingest: Runner
    #: The transports' hand-over, waking ``ingest``.
    handover: Handover
    node_cert: IssuedCertificate
    depts: dict[str, IssuedCertificate]

    def refresh_crl(self) -> None:
        """Publish a fresh CRL into the node home (the node re-reads it by mtime)."""
        self.ca.ca.crl()
        target = self.node.config.path(self.node.config.crl)
        atomic_write(target, (self.ca.dir / "crl.pem").read_bytes())

    def seal(
        self,
        sender: str,
        payload: bytes = b"id,name\n1,x\n",
        *,
        kind: str = "data",
        to: list[x509.Certificate] | None = None,
        bundle_id: uuid.UUID | None = None,
        now: dt.datetime | None = None,
        fields: dict[str, object] | None = None,
        member: str = "data.csv",
    ) -> Path:
        """A bundle signed by ``sender`` for the node (or ``to``); returns its path."""
        issued = self.depts[sender]
        assert issued.key is not None
        path = self.tmp / f"b-{uuid.uuid4().hex}.bundle"
        seal_to_file(
            [Member(member, io.BytesIO(payload), size=len(payload))],
            path,
            signer_key=issued.key,
            signer_chain=list(issued.chain),
            recipients=to or [self.node_cert.certificate],
            kind=kind,
            fields={"resource": "test"} if fields is None else fields,
            now=now or dt.datetime.now(dt.UTC),
            bundle_id=bundle_id,
        )
        return path

    def upload(self, dept: str, source: Path | bytes, *, addr: str | None = "127.0.0.1") -> str:
        """Hand ``source`` to the pipeline as if ``dept`` had uploaded it over SFTP."""
        upload_id, partial = self.handover.new_partial()
        data = source if isinstance(source, bytes) else source.read_bytes()
        partial.write_bytes(data)
        self.handover.accept_upload(
            upload_id=upload_id,
            dept=dept,
            partial=partial,
            file_name="up.bundle",
            remote_addr=addr,
        )
        return upload_id


#: Nodes opened by :func:`build_world` during the current test (closed after it).
_OPENED: list[Node] = []


def close_worlds() -> None:
    """Dispose the store engines of the worlds built during the test: a PostgreSQL pool left to
    the garbage collector holds its connections, and a long run exhausts the server's."""
    while _OPENED:
        _OPENED.pop().engine.dispose()


def build_world(tmp: Path, ca: CAFixture, database: str | None = None) -> World:
    """Create the CA certificates, the node home and register MZ330100 and RS330100."""
    node_cert = ca.issue("NODE01", "测试节点", ("127.0.0.1",), role=Role.NODE)
    depts = {
        "MZ330100": ca.issue("MZ330100", "杭州市民政局", ("127.0.0.0/8",)),
        "RS330100": ca.issue("RS330100", "杭州市人社局", ("127.0.0.0/8",)),
    }
    ca.ca.crl()
    files = tmp / "files"
    files.mkdir()
    assert node_cert.key is not None
    atomic_write(files / "node.pem", certificate_pem(node_cert.chain))
    atomic_write(files / "node.key", private_key_pem(node_cert.key, None), 0o600)
    home = tmp / "home"
    create_home(
        home,
        trust=ca.dir / "root.pem",
        cert=files / "node.pem",
        key=files / "node.key",
        crl=ca.dir / "crl.pem",
        database=database,
    )
    node = Node.open(home)
    _OPENED.append(node)
    now = dt.datetime.now(dt.UTC)
    with node.session() as s:
        for code, issued in depts.items():
            add_department(
                s,
                code,
                name=None,
                certificate=issued.chain,
                trust=node.trust(),
                allow_ips=["127.0.0.1"],
                quota_bytes=1 << 30,
                now=now,
                actor="test",
            )
    runner = Runner(node, KeepRouter(), spool=Spool(node.config.path(node.config.spool)))
    return World(
        tmp=tmp,
        ca=ca,
        node=node,
        ingest=runner,
        handover=handover_to(runner),
        node_cert=node_cert,
        depts=depts,
    )
