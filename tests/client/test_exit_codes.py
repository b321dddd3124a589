"""The client's exit codes are documented where an operator looks (the guide's table, the
top-level ``--help``), and exit 4 (a key passphrase missing) really is what the client returns."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from exchange_client.cli import app
from exchange_client.cli_shared import EXIT_PARTIAL_ANSWER, EXIT_PARTLY_REJECTED
from pki.keys import load_private_key, private_key_pem
from tests.client.clientdir import init

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "client-guide.md"
runner = CliRunner()


def _documented() -> set[int]:
    text = GUIDE.read_text("utf-8")
    table = text[text.index("## Exit codes") :].split("\n## ", 1)[0]
    return {int(n) for n in re.findall(r"^\| (\d+) \|", table, flags=re.M)}


def test_every_exit_code_is_in_the_guide() -> None:
    assert _documented() >= {0, 1, 2, 3, 4, 5, 6, EXIT_PARTLY_REJECTED, EXIT_PARTIAL_ANSWER}
    assert len({0, 1, 2, 3, 4, 5, 6, EXIT_PARTLY_REJECTED, EXIT_PARTIAL_ANSWER}) == 9  # no clash


def test_top_level_help_names_the_new_exit_codes() -> None:
    out = " ".join(runner.invoke(app, ["--help"], env={"COLUMNS": "200"}).output.split())
    assert f"{EXIT_PARTLY_REJECTED} accepted but some rows rejected" in out
    assert f"{EXIT_PARTIAL_ANSWER} a query closed not fully answered" in out
    assert "4 here: your key's passphrase is missing or wrong" in out


def test_an_encrypted_key_without_its_passphrase_exits_4(
    world: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EXCHANGE_KEY_PASSPHRASE", raising=False)
    locked = tmp_path / "locked.key"
    locked.write_bytes(private_key_pem(load_private_key(world["key"]), b"s3cret-passphrase"))
    r = runner.invoke(app, init(world, "--cert", str(world["cert"]), "--key", str(locked)))
    assert r.exit_code == 4, r.output
    assert "(E_PASSPHRASE)" in r.output and "EXCHANGE_KEY_PASSPHRASE" in r.output
    assert "Traceback" not in r.output
