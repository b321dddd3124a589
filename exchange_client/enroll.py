"""Setting up a client directory: ``init``, the CSR for a new key, importing the certificate.

Every certificate given to ``init`` is checked now against the trust root and CRL (fail
closed), the node certificate is copied into the directory and its SHA-256 pinned, and the
configuration is written last, atomically: a failed init leaves no ``client.toml``.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import asyncssh

from exchange_client.config import CONFIG_NAME, ClientConfig, load_config, save_config
from exchange_client.credentials import key_matches
from exchange_common.errors import InputError
from exchange_common.fs import atomic_write
from pki.csr import write_key_and_csr
from pki.identity import DeptCode, Role
from pki.keys import (
    certificate_pem,
    fingerprint,
    load_certificates,
    load_private_key,
)
from pki.verify import TrustStore, verify_certificate

__all__ = ["import_certificate", "init_directory"]


def _check_dept_cert(
    path: Path, key: Path, dept: DeptCode, trust: TrustStore, now: dt.datetime
) -> None:
    chain = load_certificates(path)
    if not key_matches(load_private_key(key), chain[0]):
        raise InputError(f"the key {key} does not belong to {path}", code="E_KEY_MISMATCH")
    ident = verify_certificate(chain[0], trust, now=now, chain=chain[1:], role=Role.DEPARTMENT)
    if ident.code != dept:
        raise InputError(f"{path} belongs to {ident.code}, not to {dept}", code="E_IDENTITY")


def init_directory(
    directory: Path,
    *,
    dept: DeptCode,
    node_host: str,
    node_port: int,
    trust: Path,
    node_cert: Path,
    cert: Path | None,
    key: Path | None,
    crl: Path | None,
    ssh_key: Path | None,
    new_key: bool,
    now: dt.datetime,
) -> tuple[ClientConfig, Path | None]:
    """Create the client directory; returns the configuration and the CSR path (``new_key``).

    Raises :class:`InputError` for bad arguments or files and
    :class:`~exchange_common.errors.CertificateError` when a certificate does not verify now.
    """
    directory = directory.absolute()
    if (directory / CONFIG_NAME).exists():
        raise InputError(
            f"{directory} already holds a client configuration; use another --dir or remove "
            f"{CONFIG_NAME}",
            code="E_EXISTS",
        )
    if not 1 <= node_port <= 65535:
        raise InputError(f"node port {node_port} out of range")
    if not node_host.strip():
        raise InputError("--node-host must not be empty")
    if new_key and (cert is not None or key is not None):
        raise InputError("--new-key makes a key and CSR: do not give --cert/--key with it")
    if not new_key and (cert is None or key is None):
        raise InputError("give --cert and --key (or --new-key to request a certificate)")
    trust_abs = trust.absolute()
    crl_abs = crl.absolute() if crl is not None else None
    store = TrustStore.from_files(trust_abs, crl_abs or _beside(trust_abs))
    if not store.roots:
        raise InputError(f"{trust} holds no root certificate", code="E_TRUST")
    node_chain = load_certificates(node_cert)
    verify_certificate(node_chain[0], store, now=now, chain=node_chain[1:], role=Role.NODE)
    if ssh_key is not None:
        try:
            asyncssh.read_private_key(str(ssh_key))
        except (OSError, asyncssh.KeyImportError) as e:
            raise InputError(f"{ssh_key} is not a readable OpenSSH private key: {e}") from e
    if cert is not None and key is not None:
        _check_dept_cert(cert, key, dept, store, now)

    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    csr_path: Path | None = None
    if new_key:
        key = directory / f"{dept}.key"
        csr_path = directory / f"{dept}.csr"
        if key.exists() or csr_path.exists():
            raise InputError(f"{key} or {csr_path} already exists", code="E_EXISTS")
        write_key_and_csr(key, csr_path, dept)
    assert key is not None
    node_copy = directory / "node.pem"
    atomic_write(node_copy, certificate_pem(node_chain), 0o644)
    cfg = ClientConfig(
        dir=directory,
        dept=dept,
        node_host=node_host.strip(),
        node_port=node_port,
        node_fingerprint=fingerprint(node_chain[0]),
        node_cert=node_copy,
        trust=trust_abs,
        cert=cert.absolute() if cert is not None else None,
        key=key.absolute(),
        crl=crl_abs,
        login="ssh-key" if ssh_key is not None else "x509",
        ssh_key=ssh_key.absolute() if ssh_key is not None else None,
    )
    save_config(cfg)
    return cfg, csr_path


def _beside(trust: Path) -> Path | None:
    beside = trust.parent / "crl.pem"
    return beside if beside.is_file() else None


def import_certificate(directory: Path, cert: Path, *, now: dt.datetime) -> ClientConfig:
    """Store the certificate the ministry issued for our CSR key as ``DIR/<CODE>.pem``."""
    cfg = load_config(directory)
    store = TrustStore.from_files(cfg.trust, cfg.effective_crl())
    _check_dept_cert(cert, cfg.key, cfg.dept, store, now)
    target = cfg.dir / f"{cfg.dept}.pem"
    if target.resolve() != cert.resolve():
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(cert, tmp)
        tmp.replace(target)
    cfg = cfg.with_changes(cert=target)
    save_config(cfg)
    return cfg
