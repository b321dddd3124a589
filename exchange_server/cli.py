"""``exchange-server``: the node administrator's tool."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pki._cli_common import EXIT_CODES_HELP, console, fail_on_error
from pki.errors import InputError

app = typer.Typer(
    name="exchange-server",
    help=f"The social-assistance exchange node (社会救助数据交换节点).\n\n{EXIT_CODES_HELP}",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root() -> None:
    """The social-assistance exchange node (社会救助数据交换节点)."""


@app.command()
@fail_on_error
def demo(
    directory: Annotated[
        Path, typer.Option("--dir", help="Folder to build the demo in (must not exist).")
    ] = Path("demo"),
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Delete an existing demo folder first.")
    ] = False,
) -> None:
    """Run the node's main job end to end on embedded defaults, in a scratch folder.

    Creates a test CA, a node and two departments (民政 and 人社), and runs every stage of the
    exchange that is built so far; the folder is left for you to explore. Test material only.

    **Examples**

        exchange-server demo

        exchange-server demo --dir /tmp/exchange-demo --fresh
    """
    from exchange_server.demo import run_demo

    if directory.exists() and not fresh:
        raise InputError(f"{directory} already exists: pass --fresh to rebuild it", code="E_EXISTS")
    console.print(f"Building the demo exchange in {directory}/", markup=False)
    result = run_demo(directory, say=lambda s: console.print(s, markup=False), fresh=fresh)
    if result.not_built:
        console.print("Not built yet (coming in later issues):", markup=False)
        for item in result.not_built:
            console.print(f"  - {item}", markup=False)
    console.print(f"Done. Explore {directory}/", markup=False)


def main() -> None:
    """Console-script entry point."""
    app()
