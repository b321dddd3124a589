"""``exchange-server``: the node administrator's tool."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from exchange_common.cli import EXIT_CODES_HELP, console, emit_json, err_console, fail_on_error
from exchange_common.errors import InputError
from exchange_server.admin.compare_cli import compare_app
from exchange_server.config import CONFIG_NAME
from exchange_server.node import Node, utcnow
from exchange_server.store.audit import append_event
from exchange_server.store.registry import DepartmentView
from pki.keys import load_certificates

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


HomeOpt = Annotated[Path, typer.Option("--home", help="Node home directory.", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]

dept_app = typer.Typer(
    name="dept",
    help="The department registry: who may connect, from where, with which keys.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(dept_app, name="dept")


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
) -> None:
    """Run the node: the SFTP front and the ingest pipeline, until SIGINT/SIGTERM.

    Departments log in with their registered SSH key or their ministry X.509 certificate,
    upload bundles into `/inbox` and download receipts and results from `/outbox`.

    **Examples**

        exchange-server serve --home /srv/node

        exchange-server serve --home /srv/node --host 0.0.0.0 --port 2222
    """
    from exchange_server.front.serve import run

    run(_node(home), host=host, port=port)


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
    from exchange_server.front.serve import setup_logging
    from exchange_server.pipeline.process import run_child

    setup_logging()
    run_child(_node(home), parent)


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


def _node(home: Path) -> Node:
    return Node.open(home)


def _print_dept(view: DepartmentView) -> None:
    console.print(f"{view.code}  {view.name}  [{view.state}]", markup=False)
    console.print(
        f"  certificate  serial {view.cert_serial}, valid until {view.cert_not_after:%Y-%m-%d}",
        markup=False,
    )
    console.print(f"  allowed IPs  {', '.join(view.networks)}", markup=False)
    for fp, _ in view.ssh_keys:
        console.print(f"  ssh key      {fp}", markup=False)
    console.print(f"  quota        {view.quota_bytes} bytes", markup=False)


@dept_app.command("add")
@fail_on_error
def dept_add(
    code: Annotated[str, typer.Argument(help="Department code (its SFTP login name).")],
    home: HomeOpt,
    cert: Annotated[Path, typer.Option("--cert", help="The department's certificate (PEM).")],
    name: Annotated[
        str | None, typer.Option("--name", help="Name (default: from the certificate).")
    ] = None,
    ssh_key: Annotated[
        list[Path] | None, typer.Option("--ssh-key", help="OpenSSH public key file (repeatable).")
    ] = None,
    allow_ip: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-ip", help="Allowed address/CIDR (repeatable; default: from the certificate)."
        ),
    ] = None,
    quota: Annotated[int | None, typer.Option("--quota", help="Spool quota in bytes.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Register a department; its certificate must verify against the node's trust root and CRL.

    **Examples**

        exchange-server dept add --home /srv/node MZ330100 --cert MZ330100.pem --ssh-key mz.pub

        exchange-server dept add --home /srv/node RS330100 --name 杭州市人社局 --cert RS330100.pem --allow-ip 10.33.2.0/24
    """
    from exchange_server.store.registry import add_department

    node = _node(home)
    chain = load_certificates(cert)
    keys = [_read_text(p) for p in ssh_key or []]
    with node.session() as s:
        view = add_department(
            s,
            code,
            name=name,
            certificate=chain,
            trust=node.trust(),
            allow_ips=allow_ip or [],
            ssh_keys=keys,
            quota_bytes=quota or node.config.security.default_quota_bytes,
            now=utcnow(),
            actor="admin",
        )
    emit_json(view.as_json()) if json_out else _print_dept(view)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}", code="E_NOT_FOUND") from e


@dept_app.command("list")
@fail_on_error
def dept_list(home: HomeOpt, json_out: JsonOpt = False) -> None:
    """List registered departments.

    **Example**

        exchange-server dept list --home /srv/node --json
    """
    from rich.table import Table

    from exchange_server.store.registry import list_departments

    with _node(home).session() as s:
        views = list_departments(s)
    if json_out:
        emit_json([v.as_json() for v in views])
        return
    table = Table("code", "name", "state", "allowed IPs", "ssh keys", "cert until")
    for v in views:
        table.add_row(
            v.code,
            v.name,
            v.state,
            ", ".join(v.networks),
            str(len(v.ssh_keys)),
            f"{v.cert_not_after:%Y-%m-%d}",
        )
    console.print(table)


@dept_app.command("show")
@fail_on_error
def dept_show(
    code: Annotated[str, typer.Argument(help="Department code.")],
    home: HomeOpt,
    json_out: JsonOpt = False,
) -> None:
    """Show one department.

    **Example**

        exchange-server dept show --home /srv/node MZ330100
    """
    from exchange_server.store.registry import get_department

    with _node(home).session() as s:
        view = get_department(s, code)
    emit_json(view.as_json()) if json_out else _print_dept(view)


def _set_state(code: str, home: Path, state: str, json_out: bool) -> None:
    from exchange_server.store.models import DeptState
    from exchange_server.store.registry import set_state

    with _node(home).session() as s:
        view = set_state(s, code, DeptState(state), now=utcnow(), actor="admin")
    emit_json(view.as_json()) if json_out else _print_dept(view)


@dept_app.command("disable")
@fail_on_error
def dept_disable(
    code: Annotated[str, typer.Argument(help="Department code.")],
    home: HomeOpt,
    json_out: JsonOpt = False,
) -> None:
    """Disable a department: it can no longer log in (its data and history stay).

    **Example**

        exchange-server dept disable --home /srv/node MZ330100
    """
    _set_state(code, home, "disabled", json_out)


@dept_app.command("enable")
@fail_on_error
def dept_enable(
    code: Annotated[str, typer.Argument(help="Department code.")],
    home: HomeOpt,
    json_out: JsonOpt = False,
) -> None:
    """Re-enable a disabled department.

    **Example**

        exchange-server dept enable --home /srv/node MZ330100
    """
    _set_state(code, home, "active", json_out)


@dept_app.command("set-ip")
@fail_on_error
def dept_set_ip(
    code: Annotated[str, typer.Argument(help="Department code.")],
    home: HomeOpt,
    allow_ip: Annotated[
        list[str], typer.Option("--allow-ip", help="Allowed address/CIDR (repeatable).")
    ],
    json_out: JsonOpt = False,
) -> None:
    """Replace a department's allowed addresses (within its certificate's registered networks).

    **Example**

        exchange-server dept set-ip --home /srv/node MZ330100 --allow-ip 10.33.1.0/25 --allow-ip 10.33.9.7
    """
    from exchange_server.store.registry import set_networks

    with _node(home).session() as s:
        view = set_networks(s, code, allow_ip, now=utcnow(), actor="admin")
    emit_json(view.as_json()) if json_out else _print_dept(view)


@dept_app.command("add-key")
@fail_on_error
def dept_add_key(
    code: Annotated[str, typer.Argument(help="Department code.")],
    home: HomeOpt,
    ssh_key: Annotated[Path, typer.Option("--ssh-key", help="OpenSSH public key file.")],
    json_out: JsonOpt = False,
) -> None:
    """Register one more SSH public key for a department.

    **Example**

        exchange-server dept add-key --home /srv/node MZ330100 --ssh-key new.pub
    """
    from exchange_server.store.registry import add_ssh_key

    with _node(home).session() as s:
        view = add_ssh_key(s, code, _read_text(ssh_key), now=utcnow(), actor="admin")
    emit_json(view.as_json()) if json_out else _print_dept(view)


catalog_app = typer.Typer(
    name="catalog",
    help="The data resource catalog (数据资源目录): publish, list, show and compare versions.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(catalog_app, name="catalog")


@catalog_app.command("publish")
@fail_on_error
def catalog_publish(
    source: Annotated[Path, typer.Argument(help="Catalog file (TOML, docs/catalog.md).")],
    home: HomeOpt,
    json_out: JsonOpt = False,
) -> None:
    """Validate a catalog file and publish it as the next immutable version.

    Content equal to the latest version (comments and layout aside) publishes nothing.
    Published versions live in `HOME/catalog/v<N>.toml` with their SHA-256 in
    `HOME/catalog/index.json`; a changed file is refused from then on (`E_TAMPERED`).

    **Examples**

        exchange-server catalog publish --home /srv/node config/catalog.example.toml

        exchange-server catalog publish --home /srv/node catalog.toml --json
    """
    from exchange_server.data.catalog import CatalogStore

    version, created = CatalogStore.for_home(home).publish(source)
    if created and (home / CONFIG_NAME).exists():  # a node home: the publication is audited
        node = _node(home)
        with node.session() as s:
            append_event(
                s,
                actor="operator",
                action="catalog.published",
                subject=f"v{version.version}",
                detail={"sha256": version.sha256, "resources": version.resources},
                now=utcnow(),
            )
    if json_out:
        emit_json({**version.as_json(), "created": created})
    elif created:
        console.print(f"published catalog v{version.version} sha256 {version.sha256}", markup=False)
    else:
        console.print(f"unchanged: same content as catalog v{version.version}", markup=False)


@catalog_app.command("list")
@fail_on_error
def catalog_list(home: HomeOpt, json_out: JsonOpt = False) -> None:
    """List published catalog versions, checking each file against its recorded SHA-256.

    **Example**

        exchange-server catalog list --home /srv/node
    """
    from rich.table import Table

    from exchange_server.data.catalog import CatalogStore

    versions = CatalogStore.for_home(home).versions()
    if json_out:
        emit_json([v.as_json() for v in versions])
        return
    table = Table("version", "published", "resources", "sha256", "file")
    for v in versions:
        state = "intact" if v.intact else "MODIFIED"
        table.add_row(f"v{v.version}", v.published_at, str(v.resources), v.sha256[:16], state)
    console.print(table)


@catalog_app.command("show")
@fail_on_error
def catalog_show(
    home: HomeOpt,
    version: Annotated[
        int | None, typer.Option("--version", help="Version number (default: latest).")
    ] = None,
    resource: Annotated[
        str | None, typer.Option("--resource", help="Show one resource with its items.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Show a published catalog version: its resources, or one resource in full.

    **Examples**

        exchange-server catalog show --home /srv/node

        exchange-server catalog show --home /srv/node --version 2 --resource RS-SI-01 --json
    """
    import dataclasses

    from exchange_server.data.catalog import CatalogStore

    meta, cat = CatalogStore.for_home(home).load(version)
    chosen = list(cat.resources.values())
    if resource is not None:
        if resource not in cat.resources:
            raise InputError(
                f"catalog v{meta.version} has no resource {resource}", code="E_NOT_FOUND"
            )
        chosen = [cat.resources[resource]]
    if json_out:
        emit_json(
            {"version": meta.version, "title": cat.title}
            | {"resources": [dataclasses.asdict(r) for r in chosen]}
        )
        return
    console.print(f"{cat.title}  v{meta.version}  ({meta.published_at})", markup=False)
    for r in chosen:
        console.print(
            f"{r.code}  {r.name}  [{r.sharing_type}]  {r.provider}  "
            f"level {r.security_level}  {r.feedback_days} working days",
            markup=False,
        )
        if resource is not None:
            console.print(f"  classification  {r.classification}", markup=False)
            console.print(f"  format/period   {r.format}, {r.update_period}", markup=False)
            console.print(f"  method/source   {r.sharing_method}, {r.source_system}", markup=False)
            if r.sharing_conditions:
                console.print(f"  conditions      {r.sharing_conditions}", markup=False)
            for rule in r.scope:
                items = ", ".join(rule.items) or "all items"
                console.print(
                    f"  scope           {', '.join(rule.departments)} for "
                    f"{', '.join(rule.business_types)}: {items}",
                    markup=False,
                )
            for item in r.items:
                flag = " identifies person" if item.identifies_person else ""
                console.print(
                    f"  item            {item.name} ({item.type}, {item.sensitivity}){flag}",
                    markup=False,
                )


@catalog_app.command("diff")
@fail_on_error
def catalog_diff(
    old: Annotated[int, typer.Argument(help="Older version number.")],
    new: Annotated[int, typer.Argument(help="Newer version number.")],
    home: HomeOpt,
    json_out: JsonOpt = False,
) -> None:
    """Show what changed between two published versions.

    **Example**

        exchange-server catalog diff --home /srv/node 1 2
    """
    from exchange_server.data.catalog import CatalogStore, diff_catalogs

    store = CatalogStore.for_home(home)
    lines = diff_catalogs(store.load(old)[1], store.load(new)[1])
    if json_out:
        emit_json({"old": old, "new": new, "changes": lines})
    else:
        for line in lines or [f"v{old} and v{new} have the same content"]:
            console.print(line, markup=False)


app.add_typer(compare_app, name="compare")


def main() -> None:
    """Console-script entry point."""
    app()
