"""``exchange-server dept``: the department registry (add, list, show, disable, enable, set-ip,
add-key).

A thin adapter over :mod:`exchange_server.store.registry`: it reads files, opens the node and
prints what the registry returns; every change is audited by the registry. Every department it
shows is also checked against the node's current CRL and the clock
(:func:`pki.standing.certificate_standing`), so the state shown is what the node does with the
department now: ``revoked``, ``expired``, ``no-current-crl`` (refused), ``disabled``,
``expires-soon`` or ``active``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlmodel import Session

from exchange_common.cli import console, emit_json, err_console, fail_on_error
from exchange_common.errors import CertificateError, InputError
from exchange_common.report import ReportOutOpt, print_report, report_json, report_text
from exchange_server.admin.cli_shared import HomeOpt, JsonOpt, _node, command_group
from exchange_server.admin.dept_check import SCHEMA as CHECK_SCHEMA
from exchange_server.admin.dept_check import check_department
from exchange_server.node import Node, utcnow
from exchange_server.store.models import DeptState
from exchange_server.store.registry import DepartmentView, department_certificate
from pki.keys import load_certificates
from pki.standing import (
    EXPIRY_WARNING_DAYS,
    CertState,
    Standing,
    certificate_standing,
    time_until,
)

__all__ = ["dept_app"]

dept_app = command_group(
    "dept",
    "The department registry: who may connect, from where, with which keys.",
)

#: How a state reads in the text views (JSON keeps the hyphenated words).
_STATE_WORDS = {"no-current-crl": "no current CRL"}


@dataclass(frozen=True)
class _Shown:
    """A department as the registry holds it, with its certificate's standing now."""

    view: DepartmentView
    standing: Standing

    @property
    def state(self) -> str:
        """What the node does with the department now: a refusing certificate state first,
        then the registry's (``disabled``), then ``expires-soon``, else ``active``."""
        if self.standing.refused:
            return self.standing.state.value
        if self.view.state != DeptState.ACTIVE.value:
            return self.view.state
        if self.standing.state is CertState.EXPIRES_SOON:
            return self.standing.state.value
        return self.view.state

    def as_json(self) -> dict[str, Any]:
        """The registry's view with ``state`` as above, ``registry_state`` (active/disabled
        as set by enable/disable) and the ``cert_*`` standing fields."""
        return {
            **self.view.as_json(),
            "state": self.state,
            "registry_state": self.view.state,
            **self.standing.as_json(),
        }


def _assess(
    node: Node,
    session: Session,
    views: Sequence[DepartmentView],
    now: dt.datetime,
    warn_days: int = EXPIRY_WARNING_DAYS,
) -> list[_Shown]:
    """Each department's registered certificate checked against the node's CRL at ``now``."""
    trust = node.trust()
    # The node's chain file carries the issuing intermediate the trust root file may lack.
    issuers = node.chain()[1:]
    shown = []
    for view in views:
        cert = department_certificate(session, view.code)
        assert cert is not None  # the view was read in this session
        standing = certificate_standing(cert, trust, now, issuers=issuers, warn_days=warn_days)
        shown.append(_Shown(view, standing))
    return shown


def _warn_crl(node: Node, shown: Sequence[_Shown]) -> None:
    codes = sorted({s.standing.crl_code for s in shown if s.standing.crl_code})
    if codes:
        err_console.print(
            f"warning: the node holds no current CRL ({', '.join(codes)}): it refuses every "
            f"department until a current one is installed in "
            f"{node.config.path(node.config.crl)}; revocations shown are the newest CRL's",
            markup=False,
        )


def _state_words(state: str) -> str:
    return _STATE_WORDS.get(state, state.replace("-", " "))


def _print_dept(shown: _Shown) -> None:
    view = shown.view
    console.print(f"{view.code}  {view.name}  [{_state_words(shown.state)}]", markup=False)
    console.print(
        f"  certificate  serial {view.cert_serial}, {shown.standing.describe()}", markup=False
    )
    console.print(f"  allowed IPs  {', '.join(view.networks)}", markup=False)
    for fp, _ in view.ssh_keys:
        console.print(f"  ssh key      {fp}", markup=False)
    console.print(f"  quota        {view.quota_bytes} bytes", markup=False)


def _emit(node: Node, shown: _Shown, json_out: bool) -> None:
    _warn_crl(node, [shown])
    emit_json(shown.as_json()) if json_out else _print_dept(shown)


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

    An expired certificate is refused (`E_EXPIRED`), so is one on the node's CRL (`E_REVOKED`)
    and any when the node holds no current CRL (`E_CRL_STALE`, `E_CRL_MISSING`). One that ends
    within 30 days is registered with a warning on stderr saying when: ask the ministry for its
    successor now.

    **Examples**

        exchange-server dept add --home /srv/node MZ330100 --cert MZ330100.pem --ssh-key mz.pub

        exchange-server dept add --home /srv/node RS330100 --name 杭州市人社局 --cert RS330100.pem --allow-ip 10.33.2.0/24
    """
    from exchange_server.store.registry import add_department

    node = _node(home)
    chain = load_certificates(cert)
    keys = [_read_text(p) for p in ssh_key or []]
    now = utcnow()
    with node.session() as s, _refusing(code):
        view = add_department(
            s,
            code,
            name=name,
            certificate=chain,
            trust=node.trust(),
            allow_ips=allow_ip or [],
            ssh_keys=keys,
            quota_bytes=quota or node.config.security.default_quota_bytes,
            now=now,
            actor="admin",
        )
        [shown] = _assess(node, s, [view], now)
    if shown.standing.state is CertState.EXPIRES_SOON:
        ends = shown.standing.not_after
        err_console.print(
            f"warning: the certificate of {view.code} ends {ends:%Y-%m-%d %H:%M} UTC "
            f"({time_until(ends, now)}); from then on the node refuses {view.code}. Ask the "
            "ministry for its successor now (exchange-pki issue --renew).",
            markup=False,
        )
    _emit(node, shown, json_out)


@contextlib.contextmanager
def _refusing(code: str) -> Iterator[None]:
    """A certificate refusal names the department it refuses (code and cause are kept)."""
    try:
        yield
    except CertificateError as e:
        raise CertificateError(
            f"cannot register {code}: {e.message}", code=e.code, detail=e.detail
        ) from e


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}", code="E_NOT_FOUND") from e


@dept_app.command("list")
@fail_on_error
def dept_list(
    home: HomeOpt,
    warn_days: Annotated[
        int,
        typer.Option(
            "--warn-days", min=0, help="Show 'expires soon' for certificates ending within DAYS."
        ),
    ] = EXPIRY_WARNING_DAYS,
    json_out: JsonOpt = False,
) -> None:
    """List registered departments, each checked against the node's current CRL and the clock.

    `state` is what the node does with the department now: `revoked` (its certificate is on the
    node's CRL), `expired`, `no-current-crl` (the node holds no current CRL and refuses everyone),
    `disabled`, `expires-soon` (within `--warn-days`, default 30) or `active`. `--json` adds
    `registry_state` (active/disabled), `cert_state`, `cert_days_left`, `cert_revoked_at`,
    `cert_revocation_reason` and `crl_code`.

    **Examples**

        exchange-server dept list --home /srv/node

        exchange-server dept list --home /srv/node --warn-days 60 --json
    """
    from rich.console import Console
    from rich.table import Table

    from exchange_server.store.registry import list_departments

    node = _node(home)
    with node.session(write=False) as s:
        shown = _assess(node, s, list_departments(s), utcnow(), warn_days)
    _warn_crl(node, shown)
    if json_out:
        emit_json([d.as_json() for d in shown])
        return
    table = Table("code", "name", "state", "allowed IPs", "ssh keys", "certificate")
    for d in shown:
        table.add_row(
            d.view.code,
            d.view.name,
            _state_words(d.state),
            ", ".join(d.view.networks),
            str(len(d.view.ssh_keys)),
            d.standing.describe(),
        )
    # Never let rich wrap or shorten cells to fit 80 columns (its default when piped): a name
    # cut with "…" or a state split over two lines is what an operator misreads.
    natural = console.measure(table, options=console.options.update_width(1000)).maximum
    Console(highlight=False, width=max(console.width, natural)).print(table)


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

    node = _node(home)
    with node.session(write=False) as s:
        [shown] = _assess(node, s, [get_department(s, code)], utcnow())
    _emit(node, shown, json_out)


def _set_state(code: str, home: Path, state: str, json_out: bool) -> None:
    from exchange_server.store.registry import set_state

    node, now = _node(home), utcnow()
    with node.session() as s:
        view = set_state(s, code, DeptState(state), now=now, actor="admin")
        [shown] = _assess(node, s, [view], now)
    _emit(node, shown, json_out)


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

    node, now = _node(home), utcnow()
    with node.session() as s:
        view = set_networks(s, code, allow_ip, now=now, actor="admin")
        [shown] = _assess(node, s, [view], now)
    _emit(node, shown, json_out)


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

    node, now = _node(home), utcnow()
    with node.session() as s:
        view = add_ssh_key(s, code, _read_text(ssh_key), now=now, actor="admin")
        [shown] = _assess(node, s, [view], now)
    _emit(node, shown, json_out)


@dept_app.command("check")
@fail_on_error
def dept_check(
    code: Annotated[str, typer.Argument(help="Department code.")],
    home: HomeOpt,
    days: Annotated[
        int, typer.Option(min=1, max=3650, help="How recent logins and the selftest must be.")
    ] = 30,
    out: ReportOutOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Check a department for admission or inspection (部省 第六条) and print a report to file:
    its registration, its certificate (chain, validity, revocation), the node's CRL, where and
    how it may log in, its last login and refusals, and its selftest round trip (a `probe`
    bundle from `exchange-client selftest`, accepted within `--days`). Exit 0 when every
    check passes (warnings included), 1 when one fails.

    **Examples**

        exchange-server dept check MZ330100 --home /srv/node

        exchange-server dept check MZ330100 --home /srv/node --out MZ330100-admission.txt

        exchange-server dept check MZ330100 --home /srv/node --days 7 --json
    """
    now = utcnow()
    node = _node(home)
    facts, checks = check_department(node, code, now=now, days=days)
    title = f"exchange-server dept check of {facts['department']} {facts['name']}"
    lines = [
        ("department", f"{facts['department']} {facts['name']}"),
        ("node", str(facts["node"])),
        ("at", now.isoformat(timespec="seconds")),
        ("window", f"{days} days"),
    ]
    text = report_text(title, lines, checks)
    doc = report_json(CHECK_SCHEMA, facts, checks, now)
    print_report(text, doc, checks, out=out, json_out=json_out)
