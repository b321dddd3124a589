"""A department client directory without a node: certificates from the test CA, ``init`` args.

The node address is never served (port 2222 on loopback), so what these directories test is
the client's own behaviour: configuration, state, offline checks, command-line handling.
"""

from __future__ import annotations

from pathlib import Path

from pki.identity import Role
from pki.keys import certificate_pem, private_key_pem
from tests.conftest import CAFixture

__all__ = ["init", "make_world", "write_issued"]


def write_issued(
    ca: CAFixture, code: str, folder: Path, role: Role = Role.DEPARTMENT
) -> tuple[Path, Path]:
    issued = ca.issue(code, role=role)
    assert issued.key is not None
    cert, key = folder / f"{code}.pem", folder / f"{code}.key"
    cert.write_bytes(certificate_pem(issued.chain))
    key.write_bytes(private_key_pem(issued.key, None))
    key.chmod(0o600)
    return cert, key


def make_world(ca: CAFixture, tmp_path: Path) -> dict[str, Path]:
    """Trust, CRL, a node certificate + key and MZ330100's certificate + key; ``dir`` is where
    the client directory goes (not made yet)."""
    ca.ca.crl()
    files = tmp_path / "files"
    files.mkdir()
    node_cert, node_key = write_issued(ca, "NODE01", files, Role.NODE)
    cert, key = write_issued(ca, "MZ330100", files)
    return {
        "trust": ca.dir / "root.pem",
        "crl": ca.dir / "crl.pem",
        "node_cert": node_cert,
        "node_key": node_key,
        "cert": cert,
        "key": key,
        "dir": tmp_path / "client",
    }


def init(world: dict[str, Path], *extra: str) -> list[str]:
    return [
        "init", "--dir", str(world["dir"]), "--dept", "MZ330100", "--node-host", "127.0.0.1",
        "--node-port", "2222", "--trust", str(world["trust"]), "--crl", str(world["crl"]),
        "--node-cert", str(world["node_cert"]), *extra,
    ]  # fmt: skip
