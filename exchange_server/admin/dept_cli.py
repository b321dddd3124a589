"""``exchange-server dept``: the department registry (add, list, show, disable, enable, set-ip,
add-key).

A thin adapter over :mod:`exchange_server.store.registry`: it reads files, opens the node and
prints what the registry returns; every change is audited by the registry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from exchange_common.cli import console, emit_json, fail_on_error
from exchange_common.errors import InputError
from exchange_server.admin.cli_shared import HomeOpt, JsonOpt, _node, command_group
from exchange_server.node import utcnow
from exchange_server.store.registry import DepartmentView
from pki.keys import load_certificates

__all__ = ["dept_app"]

dept_app = command_group(
    "dept",
    "The department registry: who may connect, from where, with which keys.",
)


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
