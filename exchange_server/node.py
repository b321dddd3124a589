"""A node home opened for use: configuration, state store, trust store and node identity.

Only the CLIs and the server construct a :class:`Node`; library functions take its parts as
arguments. The trust store is re-read when the CRL file changes, so a new CRL takes effect
without a restart.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from sqlalchemy import Engine
from sqlmodel import Session

from exchange_common.errors import InputError
from exchange_common.fs import atomic_write, private_dir
from exchange_server.config import NodeConfig, load_config
from exchange_server.store.db import open_store, writer
from pki.keys import PrivateKey, load_certificates, load_private_key
from pki.verify import TrustStore

__all__ = ["Node", "utcnow"]


def utcnow() -> dt.datetime:
    """Current time, aware UTC."""
    return dt.datetime.now(dt.UTC)


@dataclass
class Node:
    """The parts of a running node, opened from ``home``."""

    config: NodeConfig
    engine: Engine
    _trust: TrustStore | None = field(default=None, repr=False)
    _trust_stamp: tuple[float, float] | None = field(default=None, repr=False)
    _identity: tuple[list[x509.Certificate], PrivateKey] | None = field(default=None, repr=False)
    _audit_key: bytes | None = field(default=None, repr=False)
    _chain: list[x509.Certificate] | None = field(default=None, repr=False)

    @classmethod
    def open(cls, home: Path) -> Node:
        """Load ``HOME/node.toml`` and open (and migrate) the state store."""
        config = load_config(home)
        return cls(config=config, engine=open_store(config.database_url))

    @contextmanager
    def session(self, *, write: bool = True) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on error.

        ``write=False`` for read-only work: on SQLite it does not wait for the write lock.
        """
        bind = writer(self.engine) if write else self.engine
        with Session(bind, expire_on_commit=False) as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    def trust(self) -> TrustStore:
        """Trust root + current CRL, re-read whenever either file changes on disk."""
        root = self.config.path(self.config.trust_root)
        crl = self.config.path(self.config.crl)
        try:
            stamp = (root.stat().st_mtime, crl.stat().st_mtime if crl.exists() else 0.0)
        except FileNotFoundError as e:
            raise InputError(f"trust root missing: {root}", code="E_TRUST") from e
        if self._trust is None or stamp != self._trust_stamp:
            self._trust = TrustStore.from_files(root, crl if crl.exists() else None)
            self._trust_stamp = stamp
        return self._trust

    def identity(self) -> tuple[list[x509.Certificate], PrivateKey]:
        """The node's certificate chain and private key (EXCHANGE_KEY_PASSPHRASE if encrypted).

        Read from disk once per opened node (per process): a renewed node certificate takes
        effect when the node restarts. Raises what loading the files raises.
        """
        if self._identity is None:
            chain = self.chain()
            key = load_private_key(self.config.path(self.config.key))
            self._identity = (chain, key)
        return self._identity

    def chain(self) -> list[x509.Certificate]:
        """The node's certificate chain (leaf first), without its key: what checks of the
        node's own certificate and its issuers need. Read once per opened node; raises what
        loading the file raises."""
        if self._chain is None:
            self._chain = load_certificates(self.config.path(self.config.cert))
        return self._chain

    def audit_key(self) -> bytes:
        """The node audit key (``[audit] key``): 32 random bytes, owner-only, made atomically
        on first use (two processes racing both end up with the first one written).

        ID numbers reach the audit trail only as HMAC-SHA256 digests under it, so the trail
        holds no number while ``audit person`` can still find a person. Raises ``InputError``
        ``E_KEY_FORMAT`` for a key file that is not 32 bytes.
        """
        if self._audit_key is None:
            path = self.config.path(self.config.audit.key)
            if not path.exists():
                private_dir(path.parent)
                with contextlib.suppress(FileExistsError):
                    atomic_write(path, secrets.token_bytes(32), 0o600, exclusive=True)
            key = path.read_bytes()
            if len(key) != 32:
                raise InputError(
                    f"audit key {path} holds {len(key)} bytes, not 32", code="E_KEY_FORMAT"
                )
            self._audit_key = key
        return self._audit_key
