"""``exchange-client init``: create a client directory for one department at one node.

Every certificate is checked (trust root and CRL), the node certificate is pinned by SHA-256 and
``client.toml`` is written; the work lives in :mod:`exchange_client.enroll`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from exchange_client.cli_shared import (
    DirOpt,
    JsonOpt,
    _now,
)
from exchange_client.config import check_transport, save_config
from exchange_client.enroll import import_certificate, init_directory
from exchange_common.cli import (
    console,
    emit_json,
    fail_on_error,
)
from exchange_common.errors import InputError
from pki.identity import parse_dept_code


@fail_on_error
def init(
    directory: DirOpt,
    dept: Annotated[
        str | None, typer.Option("--dept", help="Department code, e.g. MZ330100.")
    ] = None,
    node_host: Annotated[
        str | None, typer.Option("--node-host", help="The node's host name or address.")
    ] = None,
    node_port: Annotated[int, typer.Option("--node-port", help="The node's SFTP port.")] = 22,
    trust: Annotated[
        Path | None, typer.Option("--trust", help="The ministry root certificate(s), PEM.")
    ] = None,
    cert: Annotated[
        Path | None, typer.Option("--cert", help="This department's certificate chain, PEM.")
    ] = None,
    key: Annotated[
        Path | None, typer.Option("--key", help="This department's private key, PEM.")
    ] = None,
    crl: Annotated[
        Path | None, typer.Option("--crl", help="CRL file (default: crl.pem beside --trust).")
    ] = None,
    node_cert: Annotated[
        Path | None,
        typer.Option("--node-cert", help="The node's certificate (copied; its SHA-256 is pinned)."),
    ] = None,
    ssh_key: Annotated[
        Path | None,
        typer.Option(
            "--ssh-key", help="Log in with this OpenSSH key instead of the X.509 certificate."
        ),
    ] = None,
    new_key: Annotated[
        bool,
        typer.Option(
            "--new-key", help="Generate a key and a CSR for the ministry (no certificate yet)."
        ),
    ] = False,
    import_cert: Annotated[
        Path | None,
        typer.Option(
            "--import-cert",
            help="Second step after --new-key: store the certificate the ministry issued.",
        ),
    ] = None,
    transport: Annotated[
        str,
        typer.Option(
            "--transport",
            help="SSH library: asyncssh (default) or paramiko (SSH-key login only).",
        ),
    ] = "asyncssh",
    json_out: JsonOpt = False,
) -> None:
    """Create a client directory for one department at one node.

    Checks every certificate now (trust root + CRL), copies the node certificate into the
    directory and pins its SHA-256, and writes `DIR/client.toml`. The node's SSH host key is
    pinned at the first successful connection (`DIR/known_hosts`). With `--new-key` it writes
    `DIR/CODE.key` (0600) and `DIR/CODE.csr`; send the CSR to the ministry, then run
    `init --dir DIR --import-cert CODE.pem`.

    **Examples**

        exchange-client init --dir ~/mz --dept MZ330100 --node-host node.example.gov.cn --node-port 2222 --trust root.pem --crl crl.pem --cert MZ330100.pem --key MZ330100.key --node-cert NODE01.pem

        exchange-client init --dir ~/mz --dept MZ330100 --node-host node.example.gov.cn --node-port 2222 --trust root.pem --node-cert NODE01.pem --new-key

        exchange-client init --dir ~/mz --import-cert MZ330100.pem
    """
    now = _now()
    if import_cert is not None:
        cfg = import_certificate(directory, import_cert, now=now)
        if json_out:
            emit_json({"dir": str(cfg.dir), "dept": cfg.dept, "certificate": str(cfg.cert)})
        else:
            console.print(f"certificate stored as {cfg.cert}; ready to push", markup=False)
        return
    missing = [
        name
        for name, value in (
            ("--dept", dept),
            ("--node-host", node_host),
            ("--trust", trust),
            ("--node-cert", node_cert),
        )
        if value is None
    ]
    if missing:
        raise InputError(f"init needs {', '.join(missing)}", code="E_USAGE")
    assert (
        dept is not None and node_host is not None and trust is not None and node_cert is not None
    )
    check_transport(transport, "ssh-key" if ssh_key is not None else "x509", "--transport")
    cfg, csr = init_directory(
        directory,
        dept=parse_dept_code(dept),
        node_host=node_host,
        node_port=node_port,
        trust=trust,
        node_cert=node_cert,
        cert=cert,
        key=key,
        crl=crl,
        ssh_key=ssh_key,
        new_key=new_key,
        now=now,
    )
    if transport != cfg.transport:
        cfg = dataclasses.replace(cfg, transport=transport)
        save_config(cfg)
    if json_out:
        emit_json(
            {
                "dir": str(cfg.dir),
                "dept": cfg.dept,
                "node": f"{cfg.node_host}:{cfg.node_port}",
                "node_fingerprint": cfg.node_fingerprint,
                "login": cfg.login,
                "csr": str(csr) if csr else None,
            }
        )
        return
    console.print(f"client directory ready: {cfg.dir}", markup=False)
    console.print(
        f"node {cfg.node_host}:{cfg.node_port}, certificate SHA-256 {cfg.node_fingerprint}",
        markup=False,
    )
    if csr is not None:
        console.print(
            f"send {csr} to the ministry; then: exchange-client init --dir {cfg.dir} --import-cert {cfg.dept}.pem",
            markup=False,
        )
