"""``exchange-client``: the department operator's tool. Commands arrive with issue 5."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="exchange-client",
    help="Department client for the social-assistance data exchange (not built yet: push, pull, "
    "respond, status, verify and offline export/import arrive with the client issue).",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.command()
def version() -> None:
    """Print the client version."""
    from importlib.metadata import version as dist_version

    typer.echo(dist_version("social-assistance-exchange"))


def main() -> None:
    """Console-script entry point."""
    app()
