"""``exchange-server catalog``: publish, list, show and compare catalog versions.

A thin adapter over :mod:`exchange_server.data.catalog`; a publication into a node home is
audited.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from exchange_common.cli import console, emit_json, fail_on_error
from exchange_common.errors import InputError
from exchange_server.admin.cli_shared import HomeOpt, JsonOpt, _node, command_group
from exchange_server.config import CONFIG_NAME
from exchange_server.node import utcnow
from exchange_server.store.audit import append_event

__all__ = ["catalog_app"]

catalog_app = command_group(
    "catalog",
    "The data resource catalog (数据资源目录): publish, list, show and compare versions.",
)


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
            {"version": meta.version, "title": cat.title, "query_days": cat.query_days}
            | {"resources": [dataclasses.asdict(r) for r in chosen]}
        )
        return
    console.print(f"{cat.title}  v{meta.version}  ({meta.published_at})", markup=False)
    for r in chosen:
        console.print(
            f"{r.code}  {r.name}  [{r.sharing_type}]  {r.provider}  "
            f"level {r.security_level}  answered by {r.answered_by}  "
            f"{r.feedback_days} working days",
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
    from exchange_common.catalog import diff_catalogs
    from exchange_server.data.catalog import CatalogStore

    store = CatalogStore.for_home(home)
    lines = diff_catalogs(store.load(old)[1], store.load(new)[1])
    if json_out:
        emit_json({"old": old, "new": new, "changes": lines})
    else:
        for line in lines or [f"v{old} and v{new} have the same content"]:
            console.print(line, markup=False)
