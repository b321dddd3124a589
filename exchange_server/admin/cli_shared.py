"""Options and helpers shared by the ``exchange-server`` command modules (``--home``, ``--json``,
opening the node).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from exchange_server.node import Node

HomeOpt = Annotated[Path, typer.Option("--home", help="Node home directory.", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]


def command_group(name: str, help: str) -> typer.Typer:
    """An ``exchange-server <name> …`` command group: ``-h``/``--help``, Markdown help (the
    **Examples** blocks), its help when called without a command."""
    return typer.Typer(
        name=name,
        help=help,
        no_args_is_help=True,
        rich_markup_mode="markdown",
        context_settings={"help_option_names": ["-h", "--help"]},
    )


def _node(home: Path) -> Node:
    return Node.open(home)
