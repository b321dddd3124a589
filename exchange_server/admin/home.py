"""Creating a node home (``exchange-server init``).

Layout::

    node.toml                 configuration (docs/configuration.md)
    state.db                  SQLite state store (unless --database names PostgreSQL)
    trust/root.pem, crl.pem   the ministry trust root and the current CRL
    node/node.pem, node.key   the node certificate chain and key (0600)
    node/ssh_host_ed25519_key the SSH host key (0600)
    spool/                    incoming/, depts/<CODE>/{inbox,outbox}/, quarantine/
    drop/                     removable-media import folder (办法 第十七条)

The home is built in a temporary sibling folder and renamed into place, so a failed init leaves
nothing behind.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import asyncssh
from cryptography.hazmat.primitives import serialization

from exchange_common.errors import CertificateError, InputError
from exchange_common.fs import atomic_write, new_directory, private_dir, require_empty_dir
from exchange_server.config import CONFIG_NAME, NodeConfig, SFTPConfig, render_config
from exchange_server.node import utcnow
from exchange_server.store.db import open_store
from pki.identity import Role
from pki.keys import certificate_pem, load_certificates, load_private_key
from pki.verify import TrustStore, verify_certificate

__all__ = ["SPOOL_DIRS", "create_home"]

SPOOL_DIRS = ("incoming", "depts", "quarantine", "work")


def _public_der(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def create_home(
    home: Path,
    *,
    trust: Path,
    cert: Path,
    key: Path,
    crl: Path | None,
    database: str | None = None,
    port: int = 2222,
) -> NodeConfig:
    """Create and return the configuration of a new node home.

    Checks that ``cert`` is a node certificate that verifies against ``trust`` (and ``crl``)
    and that ``key`` belongs to it. Raises InputError / CertificateError and leaves nothing.
    """
    home = Path(home)
    require_empty_dir(home)
    store = TrustStore.from_files(trust, crl)
    if not store.roots:
        raise InputError(f"{trust} holds no self-signed root certificate", code="E_TRUST")
    chain = load_certificates(cert)
    node_key = load_private_key(key)
    if _public_der(node_key.public_key()) != _public_der(chain[0].public_key()):
        raise InputError(f"{key} is not the private key of {cert}", code="E_KEY_MISMATCH")
    identity = verify_certificate(
        chain[0], store, now=utcnow(), chain=chain[1:], role=Role.NODE, require_crl=crl is not None
    )
    if identity.role is not Role.NODE:  # pragma: no cover - verify_certificate enforces it
        raise CertificateError("not a node certificate", code="E_KEY_USAGE")
    cfg = NodeConfig(
        home=home,
        code=identity.code,
        name=identity.name,
        database=database or "",
        sftp=SFTPConfig(port=port),
    )
    with new_directory(home) as tmp:
        for sub in ("trust", "node", "drop"):
            (tmp / sub).mkdir(mode=0o700)
        for sub in SPOOL_DIRS:
            private_dir(tmp / "spool" / sub)
        atomic_write(tmp / "trust" / "root.pem", certificate_pem(store.roots))
        if crl is not None:
            shutil.copyfile(crl, tmp / "trust" / "crl.pem")
        atomic_write(tmp / "node" / "node.pem", certificate_pem(chain))
        atomic_write(tmp / "node" / "node.key", Path(key).read_bytes(), 0o600)
        host_key = asyncssh.generate_private_key("ssh-ed25519")
        atomic_write(tmp / cfg.sftp.host_key, host_key.export_private_key(), 0o600)
        atomic_write(tmp / CONFIG_NAME, render_config(cfg).encode())
    open_store(cfg.database_url).dispose()
    return cfg
