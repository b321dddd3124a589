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


def _node(home: Path) -> Node:
    return Node.open(home)
