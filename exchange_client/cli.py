"""``exchange-client``: the department operator's tool (issue 5, first slice).

A thin adapter: it parses options, shows progress and prints results; the work lives in
:mod:`exchange_client.push`, :mod:`~exchange_client.pull`, :mod:`~exchange_client.enroll`.
This module holds the Typer app and the command list; each command group lives in its own
module (:mod:`~exchange_client.enroll_cli` ``init``, :mod:`~exchange_client.push_cli`
``push``/``respond``/``resend``, :mod:`~exchange_client.offline_cli` ``export``/``import``,
:mod:`~exchange_client.pull_cli` ``wait``/``pull``, :mod:`~exchange_client.status_cli` ``status``,
:mod:`~exchange_client.bundle_cli` ``verify``/``open``) with shared options in
:mod:`~exchange_client.cli_shared`.
Every deliberate failure is one ``error: ... (CODE)`` line and an exit code
(:func:`exchange_common.cli.fail_on_error`). No command prints member file names (they may carry
personal names): only counts, sizes, ids and codes.
"""

from __future__ import annotations

import typer

from exchange_client.bundle_cli import open_cmd, verify_cmd
from exchange_client.enroll_cli import init
from exchange_client.offline_cli import export_cmd, import_cmd
from exchange_client.pull_cli import pull_cmd, wait_cmd
from exchange_client.push_cli import push, resend, respond
from exchange_client.selftest_cli import selftest
from exchange_client.sent_cli import prune
from exchange_client.status_cli import status
from exchange_common.cli import EXIT_CODES_HELP, VersionOpt, version_text

app = typer.Typer(
    name="exchange-client",
    help=(
        "Department client for the social-assistance data exchange: push sealed bundles to "
        "the node, pull receipts and results, check bundles offline.\n\n"
        f"{EXIT_CODES_HELP} push --wait and wait: 0 accepted, 7 accepted but some rows "
        "rejected, 1 rejected, 5 network trouble or timeout. pull, import and status "
        "QUERY_ID: 8 a query closed not fully answered. 4 here: your key's passphrase is "
        "missing or wrong (EXCHANGE_KEY_PASSPHRASE)."
    ),
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(version: VersionOpt = False) -> None:
    """Department client for the social-assistance data exchange."""


# The commands, in the order ``--help`` lists them; each lives in the module for its group.
app.command()(init)
app.command()(push)
app.command()(respond)
app.command()(resend)
app.command("export")(export_cmd)
app.command("import")(import_cmd)
app.command("wait")(wait_cmd)
app.command("pull")(pull_cmd)
app.command()(status)
app.command("verify")(verify_cmd)
app.command("open")(open_cmd)
app.command()(selftest)
app.command()(prune)


@app.command()
def version() -> None:
    """Print the client version (the same as `exchange-client --version`)."""
    typer.echo(version_text())


def main() -> None:
    """Console-script entry point."""
    app()
