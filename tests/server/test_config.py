"""node.toml: defaults, round trip, and refusal of unknown or mistyped settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from exchange_common.errors import InputError
from exchange_common.limits import DEFAULT_LIMITS, Limits
from exchange_common.logs import LogSettings
from exchange_server.config import CONFIG_NAME, NodeConfig, SFTPConfig, load_config, render_config


def _write(home: Path, text: str) -> Path:
    home.mkdir(exist_ok=True)
    (home / CONFIG_NAME).write_text(text, encoding="utf-8")
    return home


def test_render_and_load_round_trip(tmp_path: Path) -> None:
    cfg = NodeConfig(
        home=tmp_path,
        code="NODE01",
        name='杭州"核对"节点',
        sftp=SFTPConfig(port=2022, encryption_algs=("aes256-ctr",)),
        limits=Limits(max_upload_bytes=1 << 20, max_connections=7, max_members=3),
        log=LogSettings(file="/var/log/n.log", level="DEBUG", format="json", backups=2),
    )
    _write(tmp_path, render_config(cfg))
    assert load_config(tmp_path) == cfg
    assert load_config(tmp_path).database_url.startswith("sqlite:///")


def test_defaults_fill_everything_but_identity(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, '[node]\ncode = "N1"\nname = "节点"\n'))
    assert cfg.sftp.port == 2222
    assert cfg.sftp.encryption_algs == ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
    assert cfg.path(cfg.crl) == tmp_path / "trust" / "crl.pem"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[node]\ncode = "N1"\nname = "x"\n[sftp]\nprot = 22\n', "unknown setting(s) prot"),
        ('[node]\ncode = "N1"\nname = "x"\n[sftp]\nport = "22"\n', "sftp.port: expected int"),
        ('[node]\ncode = "N1"\nname = "x"\n[secrity]\n', "unknown section(s) secrity"),
        ('[node]\nname = "x"\n', "code is required"),
        ('[node]\ncode = "N1"\nname = "x"\n[sftp]\nencryption_algs = []\n', "list of strings"),
        ('[node]\ncode = "N1"\nname = "x"\n[sftp]\nencryption_algs = [1]\n', "list of strings"),
        ("[node\n", "node.toml"),
    ],
)
def test_bad_settings_are_refused_by_name(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(InputError) as ei:
        load_config(_write(tmp_path, text))
    assert ei.value.code == "E_CONFIG"
    assert needle in ei.value.message


def test_missing_home_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(InputError) as ei:
        load_config(tmp_path / "nowhere")
    assert "exchange-server init" in ei.value.message


def test_config_is_frozen(tmp_path: Path) -> None:
    cfg = NodeConfig(home=tmp_path, code="N", name="n")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.code = "X"  # type: ignore[misc]


NODE = '[node]\ncode = "N1"\nname = "节点"\n'


def test_limits_section_is_the_one_limits_object(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path, NODE)).limits == DEFAULT_LIMITS
    cfg = load_config(
        _write(tmp_path, NODE + "[limits]\nmax_upload_bytes = 1024\nmax_members = 2\n")
    )
    assert (cfg.limits.max_upload_bytes, cfg.limits.max_members) == (1024, 2)
    assert cfg.limits.max_connections == DEFAULT_LIMITS.max_connections


def test_limits_from_older_homes_are_still_read(tmp_path: Path) -> None:
    text = (
        NODE
        + "[sftp]\nmax_connections = 3\nlogin_timeout_seconds = 9\n"
        + "[security]\nmax_upload_bytes = 4096\n"
    )
    cfg = load_config(_write(tmp_path, text))
    assert (
        cfg.limits.max_connections,
        cfg.limits.login_timeout_seconds,
        cfg.limits.max_upload_bytes,
    ) == (3, 9, 4096)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[sftp]\nmax_connections = 3\n[limits]\nmax_connections = 4\n", "both set"),
        ("[limits]\nmax_members = 0\n", "max_members"),
        ("[limits]\nmax_members = true\n", "max_members"),
        ("[limits]\nio_block_size = 1024\n", "io_block_size"),
        ("[limits]\nmax_rows = 5\n", "max_rows"),
        ('[limits]\nmax_connections = "many"\n', "max_connections"),
    ],
)
def test_bad_limits_are_refused_by_name(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(InputError) as e:
        load_config(_write(tmp_path, NODE + text))
    assert e.value.code == "E_CONFIG" and needle in e.value.message


def test_the_example_configuration_loads(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "config" / "node.example.toml"
    cfg = load_config(_write(tmp_path, example.read_text("utf-8")))
    assert cfg.limits.max_upload_bytes == 64 << 30 and cfg.limits.max_members == 10_000
    assert cfg.log == LogSettings(file="log/node.log")


def test_log_section_sets_each_key(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path, NODE)).log == LogSettings()
    text = (
        NODE
        + '[log]\nfile = "log/node.log"\nlevel = "debug"\nformat = "json"\n'
        + "max_bytes = 4096\nbackups = 3\n"
    )
    log = load_config(_write(tmp_path, text)).log
    assert (log.file, log.level, log.format, log.max_bytes, log.backups) == (
        "log/node.log",
        "DEBUG",
        "json",
        4096,
        3,
    )


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[audit]\ncheckpoint_seconds = 0\n", "audit.checkpoint_seconds"),
        ("[audit]\ncheckpoint_seconds = 90000\n", "audit.checkpoint_seconds"),
        ('[audit]\ncheckpoint_seconds = "often"\n', "audit.checkpoint_seconds"),
        ("[audit]\nwitness = 1\n", "witness"),
        ('[monitor]\naddress = "9464"\n', "monitor.address must be HOST:PORT"),
        ('[monitor]\naddress = "[]:9464"\n', "monitor.address must be HOST:PORT"),
    ],
)
def test_bad_audit_settings_are_refused_by_name(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(InputError) as e:
        load_config(_write(tmp_path, NODE + text))
    assert e.value.code == "E_CONFIG" and needle in e.value.message


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[log]\nlevel = "LOUD"\n', "[log] level must be one of DEBUG, INFO, WARNING, ERROR"),
        ('[log]\nformat = "xml"\n', "[log] format must be one of text, json"),
        ("[log]\nmax_bytes = 10\n", "[log] max_bytes must be a whole number at least 1024"),
        ("[log]\nbackups = 0\n", "[log] backups must be a whole number from 1 to 999"),
        ("[log]\nlevel = 10\n", "log.level: expected str"),
        ("[log]\nfile = 1\n", "log.file: expected str"),
        ('[log]\nmax_bytes = "1M"\n', "log.max_bytes: expected int"),
        ('[log]\npath = "x.log"\n', "unknown setting(s) path"),
    ],
)
def test_bad_log_settings_are_refused_by_name(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(InputError) as e:
        load_config(_write(tmp_path, NODE + text))
    assert e.value.code == "E_CONFIG" and needle in e.value.message


def test_audit_settings_load_and_render(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, NODE + '[audit]\ncheckpoint_seconds = 5\nkey = "k/a.key"\n'))
    assert cfg.audit.checkpoint_seconds == 5 and cfg.path(cfg.audit.key) == tmp_path / "k/a.key"
    again = load_config(_write(tmp_path, render_config(cfg)))
    assert again.audit == cfg.audit


def test_log_settings_resolve_the_file_against_the_home_and_take_overrides(
    tmp_path: Path,
) -> None:
    cfg = load_config(_write(tmp_path, NODE + '[log]\nfile = "log/node.log"\n'))
    assert cfg.log_settings().file == str(tmp_path / "log" / "node.log")
    assert cfg.log_settings(file="/var/log/n.log").file == "/var/log/n.log"
    assert cfg.log_settings(file="").file == ""  # --log-file -: stderr after all
    both = cfg.log_settings(level="warning", fmt="json")
    assert (both.level, both.format, both.max_bytes) == ("WARNING", "json", cfg.log.max_bytes)
    assert load_config(_write(tmp_path, NODE)).log_settings().file == ""  # stderr


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[retention]\nevidence_days = 10\n", "retention.evidence_days must be from 30 to 36500"),
        ("[retention]\nevidence_days = -1\n", "retention.evidence_days"),
        ("[retention]\nquarantine_days = 0\n", "retention.quarantine_days must be from 1"),
        ("[retention]\ndrop_plaintext_minutes = 0\n", "retention.drop_plaintext_minutes"),
        ("[retention]\ndrop_plaintext_minutes = true\n", "retention.drop_plaintext_minutes"),
        ("[retention]\npulled_outbox_days = -2\n", "retention.pulled_outbox_days"),
        ("[retention]\ninterval_minutes = 2000\n", "retention.interval_minutes"),
        ('[retention]\nevidence_days = "5y"\n', "retention.evidence_days: expected int"),
        ("[retention]\nreport_days = 1\n", "unknown setting(s) report_days"),
    ],
)
def test_bad_retention_settings_are_refused_by_name(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(InputError) as e:
        load_config(_write(tmp_path, NODE + text))
    assert e.value.code == "E_CONFIG" and needle in e.value.message


def test_retention_settings_load_and_render(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, NODE))
    assert (cfg.retention.evidence_days, cfg.retention.quarantine_days) == (1825, 30)
    assert (cfg.retention.drop_plaintext_minutes, cfg.retention.pulled_outbox_days) == (60, 7)
    text = "[retention]\nevidence_days = 0\nquarantine_days = 7\npulled_outbox_days = 0\n"
    cfg = load_config(_write(tmp_path, NODE + text))
    assert (cfg.retention.evidence_days, cfg.retention.pulled_outbox_days) == (0, 0)
    again = load_config(_write(tmp_path, render_config(cfg)))
    assert again.retention == cfg.retention and "[retention]" in render_config(cfg)
