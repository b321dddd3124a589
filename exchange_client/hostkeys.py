"""Pinning the node's SSH host key: trust on first use, refuse a change (pure logic).

The pin lives in ``DIR/known_hosts`` in OpenSSH format (``[host]:port keytype base64``), so
an operator can compare it with ``ssh-keygen -lf`` or reuse it with OpenSSH ``sftp``. The
first successful login records the key the node presented; afterwards a node presenting any
other key is refused before a credential is sent, like OpenSSH's "REMOTE HOST IDENTIFICATION
HAS CHANGED" (a changed key means a different machine answers: a re-installed node, or a
man in the middle). The operator resolves it by checking with the node administrator and
removing the line.
"""

from __future__ import annotations

import base64
import hashlib
from enum import StrEnum

from exchange_common.errors import TransportError

__all__ = [
    "HostKeyDecision",
    "add_pin",
    "decide",
    "host_key_changed",
    "host_pattern",
    "key_fingerprint",
    "pinned_keys",
]


class HostKeyDecision(StrEnum):
    """What to do with the host key a node presented."""

    TRUSTED = "trusted"  # matches a pinned key
    NEW = "new"  # nothing pinned for this host yet: accept and pin after login
    CHANGED = "changed"  # a different key is pinned: refuse


def host_pattern(host: str, port: int) -> str:
    """The OpenSSH known_hosts name of ``host:port`` (``[host]:port`` unless port 22)."""
    host = host.lower()
    return host if port == 22 else f"[{host}]:{port}"


def _key_of(line: str) -> str | None:
    parts = line.split()
    if len(parts) < 2:
        return None
    return f"{parts[0]} {parts[1]}"


def pinned_keys(known_hosts: str, host: str, port: int) -> list[str]:
    """Every ``keytype base64`` pinned for ``host:port`` in the known_hosts text.

    Plain host patterns only (the file is ours): hashed entries, wildcards and ``@`` markers
    are ignored rather than interpreted.
    """
    want = host_pattern(host, port)
    keys: list[str] = []
    for raw in known_hosts.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "@", "|")):
            continue
        names, _, rest = line.partition(" ")
        if want in names.lower().split(","):
            key = _key_of(rest)
            if key is not None:
                keys.append(key)
    return keys


def decide(pinned: list[str], presented: str) -> HostKeyDecision:
    """Compare the presented ``keytype base64`` with the pinned ones."""
    key = _key_of(presented)
    if not pinned:
        return HostKeyDecision.NEW
    return HostKeyDecision.TRUSTED if key in pinned else HostKeyDecision.CHANGED


def add_pin(known_hosts: str, host: str, port: int, presented: str) -> str:
    """The known_hosts text with ``presented`` pinned for ``host:port`` (idempotent)."""
    key = _key_of(presented)
    if key is None:
        raise ValueError("presented key must be 'keytype base64'")
    if key in pinned_keys(known_hosts, host, port):
        return known_hosts
    text = known_hosts if not known_hosts or known_hosts.endswith("\n") else known_hosts + "\n"
    return text + f"{host_pattern(host, port)} {key}\n"


def key_fingerprint(presented: str) -> str:
    """OpenSSH-style ``SHA256:...`` fingerprint of a ``keytype base64`` key."""
    key = _key_of(presented)
    if key is None:
        return "SHA256:?"
    try:
        blob = base64.b64decode(key.split()[1], validate=True)
    except ValueError:
        return "SHA256:?"
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def host_key_changed(host: str, port: int, presented: str, known_hosts_path: str) -> TransportError:
    """The error for a node whose host key differs from the pinned one (exit code 5)."""
    return TransportError(
        f"the node's SSH host key has CHANGED for {host_pattern(host, port)}: someone may be "
        f"intercepting the connection, or the node was re-installed; refusing to connect. "
        f"Check the new key ({key_fingerprint(presented)}) with the node administrator, then "
        f"remove the old line from {known_hosts_path}",
        code="E_HOST_KEY",
    )
