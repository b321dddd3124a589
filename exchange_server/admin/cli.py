"""``exchange-server``: the node administrator's tool.

This module holds the Typer app and the top-level commands (demo, init, serve, csr); the command
groups live in :mod:`~exchange_server.admin.dept_cli`, :mod:`~exchange_server.admin.catalog_cli`
and :mod:`~exchange_server.admin.compare_cli`, with shared options in
:mod:`~exchange_server.admin.cli_shared`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from exchange_common.cli import (
    EXIT_CODES_HELP,
    VersionOpt,
    console,
    emit_json,
    err_console,
    fail_on_error,
)
from exchange_common.errors import InputError
from exchange_common.logs import check_format, check_level
from exchange_server.admin.archive_cli import archive_app
from exchange_server.admin.audit_cli import audit_app
from exchange_server.admin.calendar_cli import calendar_app
from exchange_server.admin.catalog_cli import catalog_app
from exchange_server.admin.cli_shared import HomeOpt, JsonOpt, _node
from exchange_server.admin.compare_cli import compare_app
from exchange_server.admin.dept_cli import dept_app
from exchange_server.admin.query_cli import query_app
from exchange_server.admin.retention_cli import retention_app
from exchange_server.admin.status_cli import status, upload_app
from exchange_server.admin.watch_cli import watch

app = typer.Typer(
    name="exchange-server",
    help=f"The social-assistance exchange node (社会救助数据交换节点).\n\n{EXIT_CODES_HELP}",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(version: VersionOpt = False) -> None:
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
    from exchange_server.admin.demo import run_demo

    if directory.exists() and not fresh:
        raise InputError(f"{directory} already exists: pass --fresh to rebuild it", code="E_EXISTS")
    console.print(f"Building the demo exchange in {directory}/", markup=False)
    result = run_demo(directory, say=lambda s: console.print(s, markup=False), fresh=fresh)
    if result.not_built:
        console.print("Not built yet (coming in later issues):", markup=False)
        for item in result.not_built:
            console.print(f"  - {item}", markup=False)
    console.print(f"Done. Explore {directory}/", markup=False)


@app.command()
@fail_on_error
def init(
    home: HomeOpt,
    trust: Annotated[Path, typer.Option("--trust", help="Ministry root certificate (PEM).")],
    cert: Annotated[
        Path, typer.Option("--cert", help="Node certificate (exchange-pki issue --node).")
    ],
    key: Annotated[Path, typer.Option("--key", help="Node private key.")],
    crl: Annotated[Path | None, typer.Option("--crl", help="Current CRL (PEM).")] = None,
    database: Annotated[
        str | None, typer.Option("--database", help="Store URL (default: SQLite in HOME).")
    ] = None,
    port: Annotated[int, typer.Option("--port", help="SFTP port.")] = 2222,
    json_out: JsonOpt = False,
) -> None:
    """Create a node home: configuration, spool, state store, node identity, trust root, CRL.

    The node certificate must verify against the trust root (and CRL) as a **node**
    certificate, and the key must belong to it. An SSH host key is generated.

    **Examples**

        exchange-server init --home /srv/node --trust root.pem --cert NODE01.pem --key NODE01.key --crl crl.pem

        exchange-server init --home /srv/node ... --database postgresql+psycopg://exchange@db/exchange
    """
    from exchange_server.admin.home import create_home

    cfg = create_home(home, trust=trust, cert=cert, key=key, crl=crl, database=database, port=port)
    if json_out:
        emit_json(
            {
                "home": str(home),
                "code": cfg.code,
                "name": cfg.name,
                "database": cfg.database_url,
                "sftp_port": cfg.sftp.port,
            }
        )
    else:
        console.print(f"node {cfg.code} {cfg.name} initialised in {home}", markup=False)
        console.print(f"  configuration  {home / 'node.toml'}", markup=False)
        console.print(f"  state store    {cfg.database_url}", markup=False)
        if crl is None:
            err_console.print(
                "warning: no CRL installed: every department will be refused until you copy a "
                f"current CRL to {cfg.path(cfg.crl)}",
                markup=False,
            )


@app.command()
@fail_on_error
def serve(
    home: HomeOpt,
    host: Annotated[
        str | None, typer.Option("--host", help="Listen address (default: config).")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="Listen port (default: config).")
    ] = None,
    log_file: Annotated[
        Path | None,
        typer.Option(
            "--log-file",
            help="Log to this file, rotated by size (default: [log] file; '-' = stderr).",
        ),
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR (default: [log] level)."),
    ] = None,
    log_format: Annotated[
        str | None,
        typer.Option("--log-format", help="text or json lines (default: [log] format)."),
    ] = None,
    monitor: Annotated[
        str | None,
        typer.Option(
            "--monitor",
            help="Serve /metrics, /healthz, /status.json and the status page on HOST:PORT "
            "(default: [monitor] address; off when empty). No login: keep it on 127.0.0.1.",
        ),
    ] = None,
) -> None:
    """Run the node: the SFTP front and the ingest pipeline, until SIGINT/SIGTERM.

    Departments log in with their registered SSH key or their ministry X.509 certificate,
    upload bundles into `/inbox` and download receipts and results from `/outbox`. The log
    (both processes, ID numbers masked) goes where `[log]` in node.toml or the `--log-*`
    options say.

    **Examples**

        exchange-server serve --home /srv/node

        exchange-server serve --home /srv/node --host 0.0.0.0 --port 2222

        exchange-server serve --home /srv/node --log-file /var/log/exchange/node.log --log-format json

        exchange-server serve --home /srv/node --monitor 127.0.0.1:9464
    """
    from exchange_server.front.monitor import parse_address
    from exchange_server.front.serve import run

    options = _log_options(log_file, log_level, log_format)
    node = _node(home)
    address = monitor if monitor is not None else node.config.monitor.address
    run(
        node,
        host=host,
        port=port,
        log=node.config.log_settings(**options),
        monitor=parse_address(address) if address else None,
    )


def _log_options(file: Path | None, level: str | None, fmt: str | None) -> dict[str, str]:
    """The ``--log-*`` options given, as ``log_settings`` arguments; a bad one is an
    :class:`InputError` ``E_USAGE`` naming it (before the home is even opened)."""
    options: dict[str, str] = {}
    if file is not None:
        options["file"] = "" if str(file) == "-" else str(file.absolute())
    try:
        if level is not None:
            options["level"] = check_level(level)
    except ValueError as e:
        raise InputError(f"--log-level {e}", code="E_USAGE") from None
    try:
        if fmt is not None:
            options["fmt"] = check_format(fmt)
    except ValueError as e:
        raise InputError(f"--log-format {e}", code="E_USAGE") from None
    return options


@app.command(hidden=True)
@fail_on_error
def pipeline(
    home: HomeOpt,
    parent: Annotated[int | None, typer.Option("--parent", help="Exit when this pid dies.")] = None,
) -> None:
    """Run only the ingest pipeline (``serve`` starts and supervises it for you).

    Reads wake-up bytes on stdin and stops at end of input, SIGTERM or its parent's death.

    **Example**

        exchange-server pipeline --home /srv/node < /dev/null
    """
    from exchange_common.cli import setup_logging
    from exchange_server.pipeline.process import run_child

    node = _node(home)
    setup_logging(node.config.log_settings())
    run_child(node, parent)


@app.command()
@fail_on_error
def csr(
    code: Annotated[str, typer.Option("--code", help="The node's code, e.g. NODE01.")],
    key: Annotated[Path, typer.Option("--key", help="Where to write the new private key.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the CSR (PEM).")],
    name: Annotated[str | None, typer.Option("--name", help="The node's name.")] = None,
) -> None:
    """Make the node's key pair and a certificate signing request for the ministry.

    The key never leaves the node: send the CSR to the ministry operator, who issues with
    `exchange-pki issue --node --csr`, then run `exchange-server init` with the certificate.
    The key is encrypted with `EXCHANGE_KEY_PASSPHRASE` when that is set.

    **Examples**

        exchange-server csr --code NODE01 --name 杭州核对节点 --key node.key --out node.csr

        exchange-pki issue --ca-dir /srv/ca --dept NODE01 --name 杭州核对节点 --node --csr node.csr --out certs/
    """
    import os

    from pki.csr import write_key_and_csr
    from pki.identity import parse_dept_code
    from pki.keys import KEY_PASSPHRASE_ENV

    env = os.environ.get(KEY_PASSPHRASE_ENV)
    write_key_and_csr(
        key, out, parse_dept_code(code), name, passphrase=env.encode() if env else None
    )
    console.print(f"wrote {key} (keep it here) and {out} (send it to the ministry)", markup=False)


# The command groups, each in its own module, in the order ``--help`` lists them.
app.add_typer(dept_app, name="dept")
app.add_typer(catalog_app, name="catalog")
app.add_typer(compare_app, name="compare")
app.add_typer(calendar_app, name="calendar")
app.add_typer(query_app, name="query")
app.command(name="status")(status)
app.command(name="watch")(watch)
app.add_typer(upload_app, name="upload")
app.add_typer(audit_app, name="audit")
app.add_typer(archive_app, name="archive")
app.add_typer(retention_app, name="retention")


def main() -> None:
    """Console-script entry point."""
    app()
