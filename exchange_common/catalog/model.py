"""The catalog's values: resources, information items, sharing and sensitivity (办法 第六条).

Frozen dataclasses and enums with no I/O; :meth:`Catalog.digest` is the SHA-256 of the
canonical content (comments and layout do not count), which publication records.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class SharingType(StrEnum):
    """共享类型 (办法 第六条)."""

    UNCONDITIONAL = "unconditional"  # 无条件共享
    CONDITIONAL = "conditional"  # 有条件共享
    NONE = "none"  # 不予共享


class ItemType(StrEnum):
    """The type of an information item, as the engine reads it."""

    STRING = "string"
    CODE = "code"  # a value from a code list (``values``)
    INTEGER = "integer"
    DECIMAL = "decimal"
    DATE = "date"
    ID_NUMBER = "id_number"  # citizen ID number, GB 11643


class Sensitivity(StrEnum):
    """敏感程度 of one information item."""

    GENERAL = "general"  # 一般
    SENSITIVE = "sensitive"  # 敏感
    HIGHLY_SENSITIVE = "highly_sensitive"  # 高度敏感


class AnsweredBy(StrEnum):
    """Who answers queries for a resource (issue "Relayed queries", DESIGN §5b)."""

    NODE = "node"  # from the datasets the provider pushed to the node (归集)
    PROVIDER = "provider"  # relayed to the providing department, which answers in working days


NUMERIC_TYPES = frozenset({ItemType.INTEGER, ItemType.DECIMAL})


@dataclass(frozen=True)
class Item:
    """信息项: one column of a resource."""

    name: str
    type: ItemType = ItemType.STRING
    identifies_person: bool = False
    sensitivity: Sensitivity = Sensitivity.GENERAL
    description: str = ""
    values: tuple[str, ...] = ()
    #: A pushed row without a value here is rejected (the resource's key item always is).
    required: bool = False


@dataclass(frozen=True)
class ScopeRule:
    """One entry of 共享范围: these departments, for these business types, see these items.

    Department patterns are codes with shell wildcards (``MZ*``, ``MZ3301*``, ``*``); business
    types are names or ``*``. An empty ``items`` means every item of the resource.
    """

    departments: tuple[str, ...]
    business_types: tuple[str, ...] = ("*",)
    items: tuple[str, ...] = ()

    def admits(self, department: str, business_type: str) -> bool:
        """Whether this rule covers ``department`` for ``business_type``."""
        dept_ok = any(fnmatch.fnmatchcase(department, p) for p in self.departments)
        return dept_ok and ("*" in self.business_types or business_type in self.business_types)


@dataclass(frozen=True)
class Resource:
    """One catalog entry (数据资源)."""

    code: str
    name: str
    classification: str
    provider: str
    format: str
    update_period: str
    sharing_type: SharingType
    sharing_method: str
    source_system: str
    security_level: int
    items: tuple[Item, ...]
    key_item: str
    time_item: str | None = None
    sharing_conditions: str = ""
    scope: tuple[ScopeRule, ...] = ()
    feedback_days: int = 5
    description: str = ""
    #: Whether the node answers from pushed datasets or relays queries to the provider.
    answered_by: AnsweredBy = AnsweredBy.NODE
    #: Whether a relay carries the persons' names (else only ID numbers and authorizations).
    relay_names: bool = False

    def item(self, name: str) -> Item | None:
        """The item called ``name``, or None."""
        return next((i for i in self.items if i.name == name), None)

    @property
    def item_names(self) -> tuple[str, ...]:
        """Item names in catalog order."""
        return tuple(i.name for i in self.items)


@dataclass(frozen=True)
class Catalog:
    """A whole catalog: a title and its resources by code."""

    title: str
    resources: Mapping[str, Resource]
    feedback_days: int = 5
    business_types: tuple[str, ...] = ()
    #: Working days for the whole verification (浙江 四(一): 10).
    query_days: int = 10

    def resource(self, code: str) -> Resource | None:
        """The resource with ``code``, or None."""
        return self.resources.get(code)

    def digest(self) -> str:
        """SHA-256 of the catalog's canonical content (comments and layout do not count)."""
        canonical = json.dumps(_plain(self), ensure_ascii=False, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()


def _plain(catalog: Catalog) -> dict[str, Any]:
    return {
        "title": catalog.title,
        "feedback_days": catalog.feedback_days,
        "business_types": list(catalog.business_types),
        "query_days": catalog.query_days,
        "resources": {code: asdict(r) for code, r in sorted(catalog.resources.items())},
    }
