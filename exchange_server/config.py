"""Node configuration: ``HOME/node.toml`` with working defaults for everything but identity.

Relative paths are relative to the node home. Unknown sections or keys are refused (a typo in a
security setting must not be silently ignored). See docs/configuration.md for every key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from exchange_common.errors import InputError
from exchange_common.limits import Limits
from exchange_common.logs import LogSettings
from exchange_common.net import parse_host_port

__all__ = [
    "CONFIG_NAME",
    "AuditConfig",
    "DeadlineConfig",
    "MonitorConfig",
    "NodeConfig",
    "RetentionConfig",
    "SFTPConfig",
    "SecurityConfig",
    "load_config",
    "render_config",
]

CONFIG_NAME = "node.toml"

#: Keys that moved into ``[limits]``, by the section where older homes have them.
_MOVED_TO_LIMITS = {
    "sftp": ("login_timeout_seconds", "max_connections"),
    "security": ("max_upload_bytes",),
}


@dataclass(frozen=True)
class SFTPConfig:
    """The SFTP front."""

    host: str = "127.0.0.1"
    port: int = 2222
    host_key: str = "node/ssh_host_ed25519_key"
    #: SSH ciphers offered. AES-GCM only by default: the front is CPU-bound on large uploads
    #: and AES-GCM (AES-NI) is far cheaper than chacha20-poly1305 in asyncssh; add
    #: "aes256-ctr" for legacy clients without GCM (WinSCP before 5.19).
    encryption_algs: tuple[str, ...] = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
    #: Offered after ``encryption_algs`` to clients that do not name themselves as one of
    #: ``gcm_clients`` (libssh2/curl, JSch, PuTTY and MFT tools without AES-GCM; decision 0009).
    #: The client picks the first of its own list the node offers, so OpenSSH would pick
    #: aes128-ctr over GCM if it were offered these too.
    legacy_encryption_algs: tuple[str, ...] = ("aes128-ctr", "aes256-ctr")
    #: Prefixes of SSH client version strings that always offer AES-GCM: offered only
    #: ``encryption_algs``.
    gcm_clients: tuple[str, ...] = ("OpenSSH_", "paramiko_", "AsyncSSH_")


@dataclass(frozen=True)
class SecurityConfig:
    """Brute-force protection and quotas (sizes and counts are in :class:`Limits`)."""

    max_auth_failures: int = 5
    failure_window_seconds: int = 300
    ban_seconds: int = 900
    default_quota_bytes: int = 10 * 1024**3


@dataclass(frozen=True)
class DeadlineConfig:
    """Deadline handling for relayed queries (working days, docs/queries.md)."""

    #: Working days after an overdue deadline before the administrator is alerted.
    escalate_after_days: int = 2
    #: Working days a suspended query (missing authorizations) waits for its supplement.
    suspend_limit_days: int = 10
    #: The hub's deadline to start a query (部省 第十条); recorded for the hub role, not enforced.
    start_days: int = 2
    #: Seconds between two deadline checks of the pipeline process.
    tick_seconds: int = 60


@dataclass(frozen=True)
class AuditConfig:
    """The audit trail's checkpoints and person digests (docs/audit.md)."""

    #: Seconds between two signed checkpoints while ``serve`` runs (one more at shutdown).
    checkpoint_seconds: int = 60
    #: The node audit key (32 random bytes, owner-only), made on first use: ID numbers appear
    #: in the trail only as HMAC-SHA256 digests under it.
    key: str = "node/audit.key"
    #: Where the newest signed checkpoint is published as a file (copy it off the node).
    checkpoint_file: str = "audit/checkpoint"


@dataclass(frozen=True)
class MonitorConfig:
    """Where ``serve`` answers ``/metrics``, ``/healthz``, ``/status.json`` and the status page."""

    #: ``HOST:PORT``; empty = off. No login: keep it on loopback (docs/operator-guide.md).
    address: str = ""


@dataclass(frozen=True)
class RetentionConfig:
    """What the node keeps, and for how long (decision 0013; docs/operator-guide.md,
    "Retention and evidence"). Audit events and state-store rows are never purged."""

    #: Days evidence is kept: accepted bundles (``spool/store``), and the receipts, results,
    #: relays and notices the node sent. 0 = for ever. Anything of a query is kept at least
    #: 366 days after the query closed (a report is valid a year, 浙江 四(一)4).
    evidence_days: int = 1825
    #: Days a rejected upload stays in ``spool/quarantine``.
    quarantine_days: int = 30
    #: Minutes a file that is not a sealed bundle may stay in the drop folder.
    drop_plaintext_minutes: int = 60
    #: Days a file the department pulled completely stays in its outbox; then it moves to the
    #: node's evidence (``spool/sent``) and no longer counts against the quota at all.
    pulled_outbox_days: int = 7
    #: Minutes between two retention runs while ``serve`` runs them.
    interval_minutes: int = 15


#: Allowed values of ``[retention]``: (key, lowest, highest, also allowed).
_RETENTION_RANGES = (
    ("evidence_days", 30, 36500, 0),
    ("quarantine_days", 1, 3650, None),
    ("drop_plaintext_minutes", 1, 10080, None),
    ("pulled_outbox_days", 0, 3650, None),
    ("interval_minutes", 1, 1440, None),
)


def _check_retention(retention: RetentionConfig, path: Path) -> None:
    """Refuse (``InputError`` E_CONFIG, naming the key) a ``[retention]`` value out of range."""
    for key, low, high, extra in _RETENTION_RANGES:
        value = getattr(retention, key)
        if isinstance(value, bool) or not (low <= value <= high or value == extra):
            also = f" (or {extra}: for ever)" if extra is not None else ""
            raise InputError(
                f"{path}: retention.{key} must be from {low} to {high}{also}", code="E_CONFIG"
            )


@dataclass(frozen=True)
class NodeConfig:
    """Everything a node process needs to know, with paths resolved against ``home``."""

    home: Path
    code: str
    name: str
    database: str = ""
    spool: str = "spool"
    drop: str = "drop"
    trust_root: str = "trust/root.pem"
    crl: str = "trust/crl.pem"
    cert: str = "node/node.pem"
    key: str = "node/node.key"
    sftp: SFTPConfig = field(default_factory=SFTPConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    #: The one limits object (bundle sizes and counts, uploads, connections, login time).
    limits: Limits = field(default_factory=Limits)
    deadlines: DeadlineConfig = field(default_factory=DeadlineConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    #: How long evidence, the quarantine, drop-folder plaintext and pulled files are kept.
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    #: Where ``serve`` logs, at which level, in which format, rotated how.
    log: LogSettings = field(default_factory=LogSettings)

    def path(self, value: str) -> Path:
        """Resolve a configured path against the node home."""
        p = Path(value)
        return p if p.is_absolute() else self.home / p

    def log_settings(
        self, *, file: str | None = None, level: str | None = None, fmt: str | None = None
    ) -> LogSettings:
        """``[log]`` with the ``serve --log-*`` options given here applied, and ``file``
        resolved against the home (``""`` stays stderr).

        Raises ``ValueError`` naming the key for a bad level or format.
        """
        log = self.log
        if file is not None:
            log = replace(log, file=file)
        if level is not None:
            log = replace(log, level=level)
        if fmt is not None:
            log = replace(log, format=fmt)
        return replace(log, file=str(self.path(log.file))) if log.file else log

    @property
    def database_url(self) -> str:
        """SQLAlchemy URL of the state store (default: SQLite file ``HOME/state.db``)."""
        if self.database:
            return self.database
        return f"sqlite:///{(self.home / 'state.db').resolve()}"


def _take(cls: type[Any], data: dict[str, Any], where: str) -> Any:
    allowed = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(allowed)
    if unknown:
        raise InputError(
            f"{where}: unknown setting(s) {', '.join(sorted(unknown))}", code="E_CONFIG"
        )
    for key, value in data.items():
        default = allowed[key].default
        if isinstance(default, bool | int | str) and not isinstance(value, type(default)):
            raise InputError(f"{where}.{key}: expected {type(default).__name__}", code="E_CONFIG")
        if isinstance(default, tuple):
            if (
                not isinstance(value, list | tuple)
                or not value
                or not all(isinstance(v, str) for v in value)
            ):
                raise InputError(f"{where}.{key}: expected a list of strings", code="E_CONFIG")
            data[key] = tuple(value)
    return cls(**data)


def load_config(home: Path) -> NodeConfig:
    """Read and validate ``HOME/node.toml``; raise ``InputError`` E_CONFIG naming the problem."""
    home = Path(home)
    path = home / CONFIG_NAME
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise InputError(
            f"{home} is not a node home (no {CONFIG_NAME}): run exchange-server init",
            code="E_CONFIG",
        ) from e
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: {e}", code="E_CONFIG") from e
    node = dict(raw.pop("node", {}))
    sftp_raw, security_raw = dict(raw.pop("sftp", {})), dict(raw.pop("security", {}))
    limits_raw = dict(raw.pop("limits", {}))
    deadlines = _take(DeadlineConfig, dict(raw.pop("deadlines", {})), "deadlines")
    audit = _take(AuditConfig, dict(raw.pop("audit", {})), "audit")
    monitor = _take(MonitorConfig, dict(raw.pop("monitor", {})), "monitor")
    try:
        if monitor.address:
            parse_host_port(monitor.address)
    except ValueError:
        raise InputError(
            f"{path}: monitor.address must be HOST:PORT (e.g. 127.0.0.1:9464), or empty",
            code="E_CONFIG",
        ) from None
    if not 1 <= audit.checkpoint_seconds <= 86400:
        raise InputError(
            f"{path}: audit.checkpoint_seconds must be from 1 to 86400", code="E_CONFIG"
        )
    retention = _take(RetentionConfig, dict(raw.pop("retention", {})), "retention")
    _check_retention(retention, path)
    for name in ("escalate_after_days", "suspend_limit_days", "start_days", "tick_seconds"):
        if not 1 <= getattr(deadlines, name) <= 366:
            raise InputError(f"{path}: deadlines.{name} must be from 1 to 366", code="E_CONFIG")
    # Homes made before [limits] existed keep these keys where they were: still honoured.
    for section, old in ((sftp_raw, "sftp"), (security_raw, "security")):
        for key in _MOVED_TO_LIMITS[old]:
            if key in section:
                if key in limits_raw:
                    raise InputError(
                        f"{path}: {old}.{key} and limits.{key} both set; keep limits.{key}",
                        code="E_CONFIG",
                    )
                limits_raw[key] = section.pop(key)
    sftp = _take(SFTPConfig, sftp_raw, "sftp")
    security = _take(SecurityConfig, security_raw, "security")
    try:
        limits = _take(Limits, limits_raw, "limits")
    except ValueError as e:
        raise InputError(f"{path}: [limits] {e}", code="E_CONFIG") from None
    try:
        log = _take(LogSettings, dict(raw.pop("log", {})), "log")
    except ValueError as e:
        raise InputError(f"{path}: [log] {e}", code="E_CONFIG") from None
    if raw:
        raise InputError(f"{path}: unknown section(s) {', '.join(sorted(raw))}", code="E_CONFIG")
    for required in ("code", "name"):
        if not isinstance(node.get(required), str) or not node[required]:
            raise InputError(f"{path}: [node] {required} is required", code="E_CONFIG")
    cfg: NodeConfig = _take(
        NodeConfig,
        {
            "home": home,
            **node,
            "sftp": sftp,
            "security": security,
            "limits": limits,
            "deadlines": deadlines,
            "audit": audit,
            "monitor": monitor,
            "retention": retention,
            "log": log,
        },
        "node",
    )
    return cfg


#: The sections of node.toml after ``[node]``, in the order ``render_config`` writes them.
_SECTIONS = ("sftp", "security", "limits", "deadlines", "audit", "monitor", "retention", "log")


def render_config(cfg: NodeConfig) -> str:
    """The TOML text for ``cfg`` (used by ``exchange-server init``)."""

    def val(v: object) -> str:
        if isinstance(v, tuple):
            return "[" + ", ".join(val(x) for x in v) + "]"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return str(v).lower() if isinstance(v, bool) else str(v)

    lines = ["# Node configuration; see docs/configuration.md", "[node]"]
    for f in fields(NodeConfig):
        if f.name in {"home", *_SECTIONS}:
            continue
        lines.append(f"{f.name} = {val(getattr(cfg, f.name))}")
    for section in _SECTIONS:
        lines += ["", f"[{section}]"]
        obj = getattr(cfg, section)
        lines += [f"{f.name} = {val(getattr(obj, f.name))}" for f in fields(obj)]
    return "\n".join(lines) + "\n"
