"""Published catalog versions on the node (办法 第七条: published versions are immutable).

:class:`CatalogStore` keeps them as ``HOME/catalog/v<N>.toml`` with their SHA-256 in
``HOME/catalog/index.json``; loading a version whose file no longer matches its recorded digest
fails with ``E_TAMPERED``. The catalog format itself (resources, items, parsing, the access
rule) is shared with the department client and lives in :mod:`exchange_common.catalog`, which
this package re-exports for the node's modules.
"""

from __future__ import annotations

from exchange_common.catalog.access import AccessDecision, check_access
from exchange_common.catalog.diff import diff_catalogs
from exchange_common.catalog.model import (
    NUMERIC_TYPES,
    Catalog,
    Item,
    ItemType,
    Resource,
    ScopeRule,
    Sensitivity,
    SharingType,
)
from exchange_common.catalog.parse import TomlFields, load_catalog, parse_catalog
from exchange_server.data.catalog.store import CatalogStore, CatalogVersion

__all__ = [
    "NUMERIC_TYPES",
    "AccessDecision",
    "Catalog",
    "CatalogStore",
    "CatalogVersion",
    "Item",
    "ItemType",
    "Resource",
    "ScopeRule",
    "Sensitivity",
    "SharingType",
    "TomlFields",
    "check_access",
    "diff_catalogs",
    "load_catalog",
    "parse_catalog",
]
