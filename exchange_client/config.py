"""The client configuration: ``DIR/client.toml`` and the folders beside it.

A department's client directory holds everything the client needs, so one directory is one
department's identity at one node::

    DIR/client.toml      this configuration
    DIR/node.pem         the node certificate (copied at init; its SHA-256 is pinned)
    DIR/known_hosts      the node's SSH host key, pinned on first connection (OpenSSH format)
    DIR/state.json       what was pushed and pulled (written atomically)
    DIR/sent/            bundles as sealed and uploaded
    DIR/pulled/          bundles downloaded from /outbox that verified
    DIR/rejected/        downloads that failed verification (never opened), with the reason
    DIR/received/        opened bundles: received/<kind>/<BUNDLE_ID>/

Loading never guesses: a missing or malformed key is an :class:`~exchange_common.errors.InputError`.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from exchange_common.errors import InputError
from exchange_common.fs import atomic_write
from pki.identity import DeptCode, parse_dept_code

__all__ = [
    "CONFIG_NAME",
    "LOGIN_METHODS",
    "TRANSPORTS",
    "ClientConfig",
    "check_transport",
    "load_config",
    "render_config",
    "save_config",
]

CONFIG_NAME = "client.toml"
LOGIN_METHODS = ("x509", "ssh-key")
#: SSH libraries the client can use; paramiko has no X.509 login, so it needs an SSH key.
TRANSPORTS = ("asyncssh", "paramiko")
_VERSION = 1


#: The default of ``[retention] sent_days`` in client.toml.
DEFAULT_SENT_DAYS = 90


@dataclass(frozen=True)
class ClientConfig:
    """One department's view of one node. Paths are absolute once loaded."""

    dir: Path
    dept: DeptCode
    node_host: str
    node_port: int
    #: Lower-case hex SHA-256 of the node certificate: bundles are sealed for it, and every
    #: receipt or result must be signed by exactly this certificate.
    node_fingerprint: str
    node_cert: Path
    trust: Path
    #: The department's certificate chain; None until the ministry answered the CSR.
    cert: Path | None
    key: Path
    crl: Path | None = None
    login: str = "x509"
    ssh_key: Path | None = None
    transport: str = "asyncssh"
    connect_timeout: float = 15.0
    retries: int = 4
    #: Days a sealed bundle is kept in ``sent/`` once the node's receipt answered it (0: for
    #: ever); one still waiting for its receipt, or never sent, is always kept (``sent.py``).
    sent_days: int = DEFAULT_SENT_DAYS

    @property
    def known_hosts(self) -> Path:
        """Where the node's SSH host key is pinned."""
        return self.dir / "known_hosts"

    @property
    def state_path(self) -> Path:
        """The local state file."""
        return self.dir / "state.json"

    def folder(self, name: str) -> Path:
        """``DIR/<name>`` created on demand (mode 0700: it holds personal data)."""
        path = self.dir / name
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path

    def effective_crl(self) -> Path | None:
        """The configured CRL, else ``crl.pem`` beside the trust file, else None."""
        if self.crl is not None:
            return self.crl
        beside = self.trust.parent / "crl.pem"
        return beside if beside.is_file() else None

    def with_changes(self, **changes: Any) -> ClientConfig:
        """A copy with some fields replaced."""
        return replace(self, **changes)


def _toml_str(value: str) -> str:
    # A JSON string is a valid TOML basic string (same escapes, \uXXXX included).
    return json.dumps(value, ensure_ascii=False)


def _rel(path: Path, base: Path) -> str:
    """Store paths inside DIR relative to it, so the folder can be moved as a whole."""
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def render_config(cfg: ClientConfig) -> str:
    """TOML text of ``cfg`` (the inverse of :func:`load_config`)."""
    base = cfg.dir
    lines = [
        "# exchange-client configuration (docs/client-guide.md)",
        f"version = {_VERSION}",
        f"dept = {_toml_str(cfg.dept)}",
        "",
        "[node]",
        f"host = {_toml_str(cfg.node_host)}",
        f"port = {cfg.node_port}",
        f"certificate = {_toml_str(_rel(cfg.node_cert, base))}",
        f"fingerprint = {_toml_str(cfg.node_fingerprint)}",
        f"connect_timeout = {float(cfg.connect_timeout)}",
        f"retries = {cfg.retries}",
        "",
        "[identity]",
    ]
    if cfg.cert is not None:
        lines.append(f"certificate = {_toml_str(_rel(cfg.cert, base))}")
    lines.append(f"key = {_toml_str(_rel(cfg.key, base))}")
    lines.append(f"trust = {_toml_str(_rel(cfg.trust, base))}")
    if cfg.crl is not None:
        lines.append(f"crl = {_toml_str(_rel(cfg.crl, base))}")
    lines += ["", "[login]", f"method = {_toml_str(cfg.login)}"]
    lines.append(f"transport = {_toml_str(cfg.transport)}")
    if cfg.ssh_key is not None:
        lines.append(f"ssh_key = {_toml_str(_rel(cfg.ssh_key, base))}")
    lines += ["", "[retention]", f"sent_days = {cfg.sent_days}"]
    return "\n".join(lines) + "\n"


def check_transport(transport: str, login: str, where: str = "client configuration") -> None:
    """Refuse an unknown transport, and paramiko with X.509 login (paramiko has none)."""
    if transport not in TRANSPORTS:
        raise InputError(
            f"{where}: transport must be one of {', '.join(TRANSPORTS)}", code="E_CONFIG"
        )
    if transport == "paramiko" and login != "ssh-key":
        raise InputError(
            f"{where}: the paramiko transport logs in with an SSH key only (give --ssh-key); "
            "X.509 login needs asyncssh",
            code="E_CONFIG",
        )


def save_config(cfg: ClientConfig) -> Path:
    """Write ``DIR/client.toml`` atomically; returns its path."""
    path = cfg.dir / CONFIG_NAME
    atomic_write(path, render_config(cfg).encode(), 0o600)
    return path


def _get(table: dict[str, Any], key: str, kind: type, where: str, *, optional: bool = False) -> Any:
    value = table.get(key)
    if value is None:
        if optional:
            return None
        raise InputError(f"{where}: missing key {key!r}", code="E_CONFIG")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise InputError(f"{where}: {key!r} must be a {kind.__name__}", code="E_CONFIG")
    return value


def load_config(directory: Path) -> ClientConfig:
    """Read ``DIR/client.toml``; raises :class:`InputError` (``E_CONFIG``) when unusable."""
    directory = Path(directory).absolute()
    path = directory / CONFIG_NAME
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise InputError(
            f"no client configuration in {directory}: run `exchange-client init` first",
            code="E_CONFIG",
        ) from e
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise InputError(f"{path} is not valid TOML: {e}", code="E_CONFIG") from e
    where = str(path)
    if data.get("version") != _VERSION:
        raise InputError(f"{where}: unsupported version {data.get('version')!r}", code="E_CONFIG")
    node = data.get("node")
    ident = data.get("identity")
    login = data.get("login", {})
    retention = data.get("retention", {})
    if not isinstance(retention, dict):
        raise InputError(f"{where}: [retention] must be a table", code="E_CONFIG")
    sent_days = _get(retention, "sent_days", int, where, optional=True)
    if sent_days is not None and not 0 <= sent_days <= 36500:
        raise InputError(f"{where}: retention.sent_days must be from 0 to 36500", code="E_CONFIG")
    if not isinstance(node, dict) or not isinstance(ident, dict) or not isinstance(login, dict):
        raise InputError(f"{where}: needs [node], [identity] and [login]", code="E_CONFIG")

    def p(table: dict[str, Any], key: str, *, optional: bool = False) -> Path | None:
        text = _get(table, key, str, where, optional=optional)
        return None if text is None else directory / Path(text).expanduser()

    try:
        dept = parse_dept_code(_get(data, "dept", str, where))
    except InputError as e:
        raise InputError(f"{where}: {e.message}", code="E_CONFIG") from e
    port = _get(node, "port", int, where)
    if not 1 <= port <= 65535:
        raise InputError(f"{where}: node port {port} out of range", code="E_CONFIG")
    fp = _get(node, "fingerprint", str, where).lower()
    if len(fp) != 64 or any(c not in "0123456789abcdef" for c in fp):
        raise InputError(f"{where}: node fingerprint must be 64 hex digits", code="E_CONFIG")
    method = _get(login, "method", str, where, optional=True) or "x509"
    if method not in LOGIN_METHODS:
        raise InputError(
            f"{where}: login method must be one of {', '.join(LOGIN_METHODS)}", code="E_CONFIG"
        )
    ssh_key = p(login, "ssh_key", optional=True)
    if method == "ssh-key" and ssh_key is None:
        raise InputError(f"{where}: login method ssh-key needs ssh_key", code="E_CONFIG")
    transport = _get(login, "transport", str, where, optional=True) or "asyncssh"
    check_transport(transport, method, where)
    retries = _get(node, "retries", int, where, optional=True)
    timeout = _get(node, "connect_timeout", float, where, optional=True)
    node_cert, key, trust = p(node, "certificate"), p(ident, "key"), p(ident, "trust")
    assert node_cert is not None and key is not None and trust is not None
    return ClientConfig(
        dir=directory,
        dept=dept,
        node_host=_get(node, "host", str, where),
        node_port=port,
        node_fingerprint=fp,
        node_cert=node_cert,
        trust=trust,
        cert=p(ident, "certificate", optional=True),
        key=key,
        crl=p(ident, "crl", optional=True),
        login=method,
        ssh_key=ssh_key,
        transport=transport,
        connect_timeout=timeout if timeout is not None else 15.0,
        retries=max(0, retries) if retries is not None else 4,
        sent_days=sent_days if sent_days is not None else DEFAULT_SENT_DAYS,
    )
