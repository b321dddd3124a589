"""The social-assistance data resource catalog (社会救助数据资源目录, 办法 第六–七条): the format.

A catalog is a TOML file (``config/catalog.example.toml``; every key in ``docs/catalog.md``).
Each resource carries the metadata of 办法 第六条: classification, name, code, providing
department, format, information items (name, type, whether it identifies a person,
sensitivity), update period, sharing type, conditions, scope, method, source system and
security level, plus the feedback deadline in working days and the two columns the comparison
engine needs (the person key item and the time item).

The node and the department client read the same catalog with the same code: the node to
review pushes and queries, the client to check a table before it seals it
(:mod:`exchange_common.tables`). :func:`check_access` is the access rule, a pure function: may
department D, for business type B, see resource R and items I? It answers with an
:class:`AccessDecision` carrying a reason code (``E_UNKNOWN_RESOURCE``, ``E_NOT_SHARED``,
``E_SCOPE``, ``E_ITEM``). Published versions are kept by the node
(:mod:`exchange_server.data.catalog`).

Rooms: :mod:`~exchange_common.catalog.model` (the values), :mod:`~exchange_common.catalog.parse`
(reading TOML), :mod:`~exchange_common.catalog.access` (the access rule) and
:mod:`~exchange_common.catalog.diff`.
"""

from __future__ import annotations

from exchange_common.catalog.access import AccessDecision, check_access
from exchange_common.catalog.diff import diff_catalogs
from exchange_common.catalog.model import (
    NUMERIC_TYPES,
    AnsweredBy,
    Catalog,
    Item,
    ItemType,
    Resource,
    ScopeRule,
    Sensitivity,
    SharingType,
)
from exchange_common.catalog.parse import TomlFields, load_catalog, parse_catalog

__all__ = [
    "NUMERIC_TYPES",
    "AccessDecision",
    "AnsweredBy",
    "Catalog",
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
