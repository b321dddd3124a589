"""What ``--help`` and ``--version`` show: every placeholder of a command's text survives the
Markdown rendering, and the three CLIs name their installed version."""

from __future__ import annotations

import inspect
import re
from importlib.metadata import version

import pytest
import typer
from typer.testing import CliRunner

from exchange_client.cli import app

runner = CliRunner()

#: A placeholder a reader types in: ``<kind>``, ``<BUNDLE_ID>``.
PLACEHOLDER = re.compile(r"<[A-Za-z_]+>")

COMMANDS = {
    (c.name or (c.callback.__name__ if c.callback else "")): c.callback
    for c in app.registered_commands
}


def _help(*args: str) -> str:
    r = runner.invoke(app, [*args, "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    return r.output


def test_pull_help_keeps_kind_in_the_output_path() -> None:
    """Markdown took ``<kind>`` for an HTML tag and printed ``OUT//<BUNDLE_ID>/``."""
    assert "OUT/<kind>/<BUNDLE_ID>/" in _help("pull")
    assert "OUT/<kind>/<BUNDLE_ID>/" in _help()  # the command list's short help too


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_placeholder_of_a_command_text_is_shown(name: str) -> None:
    doc = inspect.getdoc(COMMANDS[name]) or ""
    shown = _help(name)
    missing = [p for p in sorted(set(PLACEHOLDER.findall(doc))) if p not in shown]
    assert not missing, f"{name} --help lost {missing}"


def test_version_option_prints_the_installed_version() -> None:
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0, r.output
    assert r.output == f"exchange-client {version('social-assistance-exchange')}\n"
    assert runner.invoke(app, ["version"]).output.strip() == version("social-assistance-exchange")


@pytest.mark.parametrize("module", ["exchange_server.admin.cli", "pki.cli"])
def test_server_and_pki_have_version_too(module: str) -> None:
    other: typer.Typer = __import__(module, fromlist=["app"]).app
    r = runner.invoke(other, ["--version"])
    assert r.exit_code == 0, r.output
    assert r.output.strip().endswith(version("social-assistance-exchange"))
