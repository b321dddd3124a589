"""The social-assistance data resource catalog (社会救助数据资源目录, 办法 第六–七条).

A catalog is a TOML file (``config/catalog.example.toml``; every key in ``docs/catalog.md``).
Each resource carries the metadata of 办法 第六条: classification, name, code, providing
department, format, information items (name, type, whether it identifies a person,
sensitivity), update period, sharing type, conditions, scope, method, source system and
security level, plus the feedback deadline in working days and the two columns the comparison
engine needs (the person key item and the time item).

Published versions are immutable (办法 第七条): :class:`CatalogStore` keeps them as
``HOME/catalog/v<N>.toml`` with their SHA-256 in ``HOME/catalog/index.json``; loading a
version whose file no longer matches its recorded digest fails with ``E_TAMPERED``.

:func:`check_access` is the access rule, a pure function: may department D, for business
type B, see resource R and items I? It answers with a :class:`AccessDecision` carrying a
reason code (``E_UNKNOWN_RESOURCE``, ``E_NOT_SHARED``, ``E_SCOPE``, ``E_ITEM``).

This package re-exports the public API; the rooms behind it are
:mod:`~exchange_server.data.catalog.model` (the values), :mod:`~exchange_server.data.catalog.parse`
(reading TOML), :mod:`~exchange_server.data.catalog.access` (the access rule),
:mod:`~exchange_server.data.catalog.diff` and :mod:`~exchange_server.data.catalog.store`
(published versions).
"""

from __future__ import annotations

from exchange_server.data.catalog.access import AccessDecision, check_access
from exchange_server.data.catalog.diff import diff_catalogs
from exchange_server.data.catalog.model import (
    NUMERIC_TYPES,
    Catalog,
    Item,
    ItemType,
    Resource,
    ScopeRule,
    Sensitivity,
    SharingType,
)
from exchange_server.data.catalog.parse import TomlFields, load_catalog, parse_catalog
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
