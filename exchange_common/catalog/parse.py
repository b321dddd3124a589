"""Reading a catalog TOML file strictly: :func:`parse_catalog`, :func:`load_catalog`, :class:`TomlFields`.

Every key is checked (type, allowed values, required or not) and every problem is an
:class:`~exchange_common.errors.InputError` ``E_CATALOG`` naming the place. :class:`TomlFields`
is the table reader the comparison rules file reuses.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from exchange_common.catalog.model import (
    AnsweredBy,
    Catalog,
    Item,
    ItemType,
    Resource,
    ScopeRule,
    Sensitivity,
    SharingType,
)
from exchange_common.errors import InputError

_E = TypeVar("_E", bound=StrEnum)

_CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class TomlFields:
    """Reads one TOML table, naming the place of every error.

    Errors are InputError ``error_code`` with the message ``"<source_name>: <where>: ..."``;
    subclasses set both for other configuration files (the comparison rules).
    """

    source_name = "catalog"
    error_code = "E_CATALOG"

    def __init__(self, table: Mapping[str, Any], where: str) -> None:
        self.table = table
        self.where = where

    def only(self, *keys: str) -> None:
        """Refuse keys outside ``keys`` (a typo must not silently drop a rule)."""
        unknown = sorted(set(self.table) - set(keys))
        if unknown:
            raise self.fail(f"unknown keys {unknown}")

    def fail(self, message: str) -> InputError:
        return InputError(f"{self.source_name}: {self.where}: {message}", code=self.error_code)

    def text(self, key: str, default: str | None = None) -> str:
        value = self.table.get(key, default)
        if value is None:
            raise self.fail(f"missing '{key}'")
        if not isinstance(value, str) or (not value.strip() and default is None):
            raise self.fail(f"'{key}' must be a non-empty string")
        return value.strip()

    def integer(
        self, key: str, default: int | None = None, *, low: int = 0, high: int = 10**6
    ) -> int:
        value = self.table.get(key, default)
        if value is None:
            raise self.fail(f"missing '{key}'")
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(f"'{key}' must be an integer from {low} to {high}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.table.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(f"'{key}' must be true or false")
        return value

    def texts(self, key: str, default: Sequence[str] = ()) -> tuple[str, ...]:
        value = self.table.get(key, list(default))
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(f"'{key}' must be a list of non-empty strings")
        return tuple(value)

    def enum(self, key: str, kind: type[_E], default: _E | None = None) -> _E:
        raw = self.table.get(key, default)
        try:
            return kind(raw)
        except ValueError:
            allowed = ", ".join(m.value for m in kind)
            raise self.fail(f"'{key}' is {raw!r}; expected one of {allowed}") from None

    def tables(self, key: str) -> list[Mapping[str, Any]]:
        value = self.table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.fail(f"'{key}' must be an array of tables ([[...{key}]])")
        return value


def _parse_item(table: Mapping[str, Any], where: str) -> Item:
    f = TomlFields(table, where)
    f.only("name", "type", "identifies_person", "sensitivity", "description", "values", "required")
    return Item(
        name=f.text("name"),
        type=f.enum("type", ItemType, ItemType.STRING),
        identifies_person=f.flag("identifies_person", False),
        sensitivity=f.enum("sensitivity", Sensitivity, Sensitivity.GENERAL),
        description=f.text("description", ""),
        values=f.texts("values"),
        required=f.flag("required", False),
    )


def _parse_resource(table: Mapping[str, Any], default_days: int, index: int) -> Resource:
    f = TomlFields(table, f"resource #{index + 1}")
    code = f.text("code")
    if not _CODE_RE.match(code):
        raise f.fail(f"code {code!r} must be letters, digits, '.', '_' or '-'")
    f.where = f"resource {code}"
    f.only(
        "code", "name", "classification", "provider", "format", "update_period",
        "sharing_type", "sharing_conditions", "scope", "sharing_method", "source_system",
        "security_level", "item", "key_item", "time_item", "feedback_days", "description",
        "answered_by", "relay_names",
    )  # fmt: skip
    items = tuple(
        _parse_item(t, f"resource {code} item #{n + 1}") for n, t in enumerate(f.tables("item"))
    )
    if not items:
        raise f.fail("has no information items ([[resource.item]])")
    names = [i.name for i in items]
    if len(set(names)) != len(names):
        raise f.fail("item names must be unique")
    key_item = f.text("key_item")
    key = next((i for i in items if i.name == key_item), None)
    if key is None or key.type is not ItemType.ID_NUMBER:
        raise f.fail(f"key_item {key_item!r} must name an item of type id_number")
    time_item = table.get("time_item")
    if time_item is not None:
        t = next((i for i in items if i.name == time_item), None)
        if t is None or t.type is not ItemType.DATE:
            raise f.fail(f"time_item {time_item!r} must name an item of type date")
    sharing = f.enum("sharing_type", SharingType)
    scope: list[ScopeRule] = []
    for n, rule_table in enumerate(f.tables("scope")):
        sf = TomlFields(rule_table, f"resource {code} scope #{n + 1}")
        sf.only("departments", "business_types", "items")
        rule = ScopeRule(
            departments=sf.texts("departments"),
            business_types=sf.texts("business_types", ("*",)),
            items=sf.texts("items"),
        )
        if not rule.departments:
            raise sf.fail("'departments' must not be empty")
        unknown = [i for i in rule.items if i not in names]
        if unknown:
            raise sf.fail(f"unknown items {unknown}")
        scope.append(rule)
    if sharing is SharingType.CONDITIONAL and not scope:
        raise f.fail("a conditional resource needs at least one [[resource.scope]] rule")
    if sharing is SharingType.CONDITIONAL and "sharing_conditions" not in table:
        raise f.fail("a conditional resource must state its 'sharing_conditions'")
    return Resource(
        code=code,
        name=f.text("name"),
        classification=f.text("classification"),
        provider=f.text("provider"),
        format=f.text("format"),
        update_period=f.text("update_period"),
        sharing_type=sharing,
        sharing_conditions=f.text("sharing_conditions", ""),
        scope=tuple(scope),
        sharing_method=f.text("sharing_method"),
        source_system=f.text("source_system"),
        security_level=f.integer("security_level", low=1, high=4),
        items=items,
        key_item=key_item,
        time_item=time_item,
        feedback_days=f.integer("feedback_days", default_days, low=1, high=60),
        description=f.text("description", ""),
        answered_by=f.enum("answered_by", AnsweredBy, AnsweredBy.NODE),
        relay_names=f.flag("relay_names", False),
    )


def parse_catalog(text: str, *, source: str = "catalog") -> Catalog:
    """Parse and validate catalog TOML; raises InputError (``E_CATALOG``) naming the problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{source}: not valid TOML: {e}", code="E_CATALOG") from None
    head = TomlFields(data.get("catalog", {}), "[catalog]")
    if not isinstance(head.table, dict):
        raise head.fail("must be a table")
    head.only("title", "feedback_days", "business_types", "query_days")
    TomlFields(data, source).only("catalog", "resource")
    days = head.integer("feedback_days", 5, low=1, high=60)
    resources: dict[str, Resource] = {}
    for n, table in enumerate(TomlFields(data, source).tables("resource")):
        r = _parse_resource(table, days, n)
        if r.code in resources:
            raise InputError(f"catalog: resource code {r.code} appears twice", code="E_CATALOG")
        resources[r.code] = r
    if not resources:
        raise InputError(f"catalog: {source} defines no [[resource]]", code="E_CATALOG")
    return Catalog(
        title=head.text("title", "社会救助数据资源目录"),
        resources=resources,
        feedback_days=days,
        business_types=head.texts("business_types"),
        query_days=head.integer("query_days", 10, low=1, high=120),
    )


def load_catalog(path: Path) -> Catalog:
    """Read and parse a catalog file."""
    return parse_catalog(_read(path), source=str(path))


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}", code="E_NOT_FOUND") from e
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text", code="E_CATALOG") from None
