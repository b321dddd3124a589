"""``exchange-client verify`` and ``open``: check or decrypt a bundle file offline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from exchange_client.cli_shared import (
    DirOpt,
    JsonOpt,
    _now,
)
from exchange_client.config import load_config
from exchange_client.credentials import trust_store
from exchange_common.cli import (
    console,
    emit_json,
    fail_on_error,
)
from exchange_common.errors import InputError
from pki.bundle import open_bundle, verify
from pki.keys import load_certificates, load_private_key


@fail_on_error
def verify_cmd(
    directory: DirOpt,
    bundle: Annotated[Path, typer.Argument(help="The bundle file to check.")],
    json_out: JsonOpt = False,
) -> None:
    """Check a bundle offline: signature, sender chain and CRL, times (no private key needed).

    Says whether the signer is the pinned node. Exit code 1 when the bundle is refused.

    **Examples**

        exchange-client verify --dir ~/mz ~/mz/pulled/receipt-….bundle
    """
    cfg = load_config(directory)
    vb = verify(bundle, trust_store(cfg), now=_now())
    data = {
        "valid": True,
        "bundle_id": str(vb.bundle_id),
        "kind": vb.header.kind.value,
        "sender": vb.sender.code,
        "sender_is_pinned_node": vb.sender.fingerprint == cfg.node_fingerprint,
        "created_at": vb.header.created_at.isoformat(),
        "expires_at": vb.header.expires_at.isoformat(),
        "sha256": vb.sha256,
    }
    if json_out:
        emit_json(data)
    else:
        node = " (the pinned node)" if data["sender_is_pinned_node"] else ""
        console.print(
            f"valid {data['kind']} bundle {data['bundle_id']} from {vb.sender.code}{node}",
            markup=False,
        )


@fail_on_error
def open_cmd(
    directory: DirOpt,
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the members (must not hold them).")
    ],
    bundle: Annotated[Path, typer.Argument(help="The bundle file to open.")],
    json_out: JsonOpt = False,
) -> None:
    """Verify and decrypt a bundle addressed to this department into OUT (offline).

    **Examples**

        exchange-client open --dir ~/mz --out /tmp/result ~/mz/pulled/result-….bundle
    """
    cfg = load_config(directory)
    if cfg.cert is None:
        raise InputError("no department certificate yet (init --import-cert)", code="E_NO_CERT")
    ob = open_bundle(
        bundle,
        out,
        recipient_key=load_private_key(cfg.key),
        recipient_cert=load_certificates(cfg.cert)[0],
        trust=trust_store(cfg),
        now=_now(),
    )
    size = sum(m.size for m in ob.manifest.members)
    if json_out:
        emit_json(
            {
                "bundle_id": str(ob.header.bundle_id),
                "kind": ob.header.kind.value,
                "sender": ob.sender.code,
                "members": len(ob.paths),
                "bytes": size,
                "out": str(out),
            }
        )
    else:
        console.print(
            f"opened {ob.header.kind.value} bundle {ob.header.bundle_id} from {ob.sender.code}: {len(ob.paths)} file(s), {size} bytes into {out}",
            markup=False,
        )
