"""``exchange-server serve``'s log options and ``[log]``: a bad value is one line naming the
option or key, exit 3, no traceback, and nothing starts (the real process: test_node_logs)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from exchange_server.admin.cli import app
from exchange_server.config import CONFIG_NAME


@pytest.mark.parametrize(
    ("option", "value", "needle"),
    [
        (
            "--log-level",
            "LOUD",
            "--log-level must be one of DEBUG, INFO, WARNING, ERROR, not 'LOUD'",
        ),
        ("--log-level", "TRACE", "--log-level must be one of"),
        ("--log-format", "xml", "--log-format must be one of text, json, not 'xml'"),
    ],
)
def test_a_bad_log_option_is_named(tmp_path: Path, option: str, value: str, needle: str) -> None:
    # Checked before the home is opened: this one is not a node home at all.
    r = CliRunner().invoke(app, ["serve", "--home", str(tmp_path), option, value])
    assert r.exit_code == 3, r.output
    assert needle in r.stderr and "(E_USAGE)" in r.stderr and "Traceback" not in r.stderr


def test_a_bad_log_key_in_node_toml_is_named(tmp_path: Path) -> None:
    (tmp_path / CONFIG_NAME).write_text(
        '[node]\ncode = "N1"\nname = "节点"\n[log]\nformat = "yaml"\n', encoding="utf-8"
    )
    r = CliRunner().invoke(app, ["serve", "--home", str(tmp_path), "--log-level", "debug"])
    assert r.exit_code == 3, r.output
    assert "[log] format must be one of text, json, not 'yaml'" in r.stderr
    assert "(E_CONFIG)" in r.stderr and "Traceback" not in r.stderr
