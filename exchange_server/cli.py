"""``exchange-server``: the node administrator's tool."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="exchange-server",
    help="The social-assistance exchange node.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def main() -> None:
    """Console-script entry point."""
    app()
