"""The one limits object: every size and count the product enforces, in one place.

Limits protect the node from hostile or broken input (a peer's bundle that claims a million
members, a header of a gigabyte) and keep memory flat. They are enforced *while streaming*,
before the data they bound has been read, and they apply both when reading (a peer's bundle is
refused with ``E_LIMIT``) and when writing (we never produce a bundle a peer would refuse).

It is also the node's one limits object: ``[limits]`` in ``node.toml`` sets any field
(docs/configuration.md), and the SFTP front (upload size, connections, login time) and the
pipeline (every bundle it verifies and opens) read the same object. Add fields with defaults so
existing callers keep working.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["DEFAULT_LIMITS", "GIB", "KIB", "MIB", "Limits"]

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


@dataclass(frozen=True)
class Limits:
    """The one limits object (sizes in bytes). Frozen: derive variants with ``replace``.

    ========================  ===================================================================
    ``max_header_size``       cleartext bundle header (JSON)
    ``max_manifest_size``     encrypted manifest (JSON: member list and kind-specific fields)
    ``max_members``           files in one bundle
    ``max_member_size``       one file in a bundle
    ``max_total_size``        the whole bundle file
    ``max_recipients``        recipients one bundle is encrypted to
    ``max_chain_length``      certificates in the sender's chain (leaf included)
    ``io_block_size``         read/write block for streaming (memory use grows with it)
    ``max_upload_bytes``      one upload to the node (the SFTP front refuses a write past it)
    ``max_connections``       concurrent connections to the node's SFTP front
    ``login_timeout_seconds`` time a client has to authenticate
    ``max_preauth_connections``   connections not yet logged in, in total (within
                              ``max_connections``: silent ones cannot take every slot)
    ``max_preauth_per_address``   connections not yet logged in, from one address
    ``handshake_timeout_seconds`` time a client has to ask to authenticate (SSH version, key
                              exchange, the first login request); a connection silent that
                              long is closed and counts as a failed login
    ``max_auth_tries``        credentials one connection may offer (OpenSSH's MaxAuthTries);
                              each refused one counts as a failed login
    ``max_attempts``          times the pipeline tries one upload that fails with a node-side
                              error before it gives up on it (``E_NODE_FAULT``)
    ``max_table_rows``        rows of one table in a bundle, as a Parquet file declares them
                              (checked before a row is read: Parquet compresses 100,000,000
                              identical rows into a few kilobytes)
    ========================  ===================================================================
    """

    max_header_size: int = 1 * MIB
    max_manifest_size: int = 16 * MIB
    max_members: int = 10_000
    max_member_size: int = 64 * GIB
    max_total_size: int = 64 * GIB
    max_recipients: int = 64
    max_chain_length: int = 4
    io_block_size: int = 1 * MIB
    max_upload_bytes: int = 64 * GIB
    max_connections: int = 200
    login_timeout_seconds: int = 60
    max_preauth_connections: int = 64
    max_preauth_per_address: int = 32
    handshake_timeout_seconds: int = 10
    max_auth_tries: int = 6
    max_table_rows: int = 50_000_000
    max_attempts: int = 5

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"limit {f.name} must be a positive integer, not {value!r}")
        if self.io_block_size < 4 * KIB:
            raise ValueError("io_block_size must be at least 4 KiB")


#: Limits used when the caller does not pass its own.
DEFAULT_LIMITS = Limits()
