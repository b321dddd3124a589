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
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import json
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from exchange_common.errors import InputError
from exchange_common.fs import atomic_write

__all__ = [
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


NUMERIC_TYPES = frozenset({ItemType.INTEGER, ItemType.DECIMAL})

_E = TypeVar("_E", bound=StrEnum)

_CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


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
        "resources": {code: asdict(r) for code, r in sorted(catalog.resources.items())},
    }


# --------------------------------------------------------------------------- parsing


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
    head.only("title", "feedback_days", "business_types")
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


# --------------------------------------------------------------------------- access


@dataclass(frozen=True)
class AccessDecision:
    """The answer of :func:`check_access`: allowed with the visible items, or a reason code."""

    allowed: bool
    reason: str | None = None
    message: str = ""
    items: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def check_access(
    catalog: Catalog,
    department: str,
    business_type: str,
    resource_code: str,
    items: Iterable[str] | None = None,
) -> AccessDecision:
    """May ``department``, for ``business_type``, see ``items`` of resource ``resource_code``?

    ``items=None`` asks for every item the department may see. The answer lists the visible
    items in catalog order. Reasons: ``E_UNKNOWN_RESOURCE`` (no such resource),
    ``E_NOT_SHARED`` (sharing type none), ``E_SCOPE`` (conditional, and no scope rule admits
    this department and business type), ``E_ITEM`` (an item that the resource lacks or that the
    admitting rules do not grant). The providing department always sees its own resource.
    """
    resource = catalog.resource(resource_code)
    if resource is None:
        return AccessDecision(False, "E_UNKNOWN_RESOURCE", f"no resource {resource_code!r}")
    if resource.provider == department:
        granted: set[str] = set(resource.item_names)
    elif resource.sharing_type is SharingType.NONE:
        return AccessDecision(False, "E_NOT_SHARED", f"{resource.code} is not shared (不予共享)")
    elif resource.sharing_type is SharingType.UNCONDITIONAL:
        granted = set(resource.item_names)
    else:
        rules = [r for r in resource.scope if r.admits(department, business_type)]
        if not rules:
            return AccessDecision(
                False,
                "E_SCOPE",
                f"{department} may not see {resource.code} for business type {business_type!r}",
            )
        granted = set()
        for rule in rules:
            granted.update(rule.items or resource.item_names)
    wanted = list(dict.fromkeys(items)) if items is not None else None
    if wanted is not None:
        unknown = [i for i in wanted if resource.item(i) is None]
        if unknown:
            return AccessDecision(False, "E_ITEM", f"{resource.code} has no items {unknown}")
        denied = [i for i in wanted if i not in granted]
        if denied:
            return AccessDecision(
                False, "E_ITEM", f"{department} may not see items {denied} of {resource.code}"
            )
        granted = set(wanted)
    visible = tuple(n for n in resource.item_names if n in granted)
    return AccessDecision(True, None, "", visible)


# --------------------------------------------------------------------------- diff


def diff_catalogs(old: Catalog, new: Catalog) -> list[str]:
    """Human-readable differences, one line each (empty when the content is equal)."""
    lines: list[str] = []
    if old.title != new.title:
        lines.append(f"~ title: {old.title!r} -> {new.title!r}")
    if old.feedback_days != new.feedback_days:
        lines.append(f"~ feedback_days: {old.feedback_days} -> {new.feedback_days}")
    for code in sorted(set(old.resources) - set(new.resources)):
        lines.append(f"- resource {code} {old.resources[code].name}")
    for code in sorted(set(new.resources) - set(old.resources)):
        lines.append(f"+ resource {code} {new.resources[code].name}")
    for code in sorted(set(old.resources) & set(new.resources)):
        a, b = asdict(old.resources[code]), asdict(new.resources[code])
        for key in a:
            if key == "items" or a[key] == b[key]:
                continue
            lines.append(f"~ resource {code}: {key}: {a[key]!r} -> {b[key]!r}")
        items_a = {i["name"]: i for i in a["items"]}
        items_b = {i["name"]: i for i in b["items"]}
        for name in [n for n in items_a if n not in items_b]:
            lines.append(f"- resource {code} item {name}")
        for name in [n for n in items_b if n not in items_a]:
            lines.append(f"+ resource {code} item {name}")
        for name in [n for n in items_a if n in items_b and items_a[n] != items_b[n]]:
            changed = {k: v for k, v in items_b[name].items() if items_a[name][k] != v}
            lines.append(f"~ resource {code} item {name}: {changed}")
    return lines


# --------------------------------------------------------------------------- versions

INDEX_NAME = "index.json"


@dataclass(frozen=True)
class CatalogVersion:
    """One published version as recorded in the index."""

    version: int
    file: str
    sha256: str
    content_sha256: str
    published_at: str
    resources: int
    intact: bool = True

    def as_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass
class CatalogStore:
    """Published catalog versions under ``HOME/catalog``: immutable files plus an index.

    ``v<N>.toml`` is the published file byte for byte (mode 0444); ``index.json`` records its
    SHA-256, the digest of its canonical content, the time and the number of resources.
    """

    root: Path
    _index: list[dict[str, Any]] = field(default_factory=list, init=False, repr=False)

    @classmethod
    def for_home(cls, home: Path) -> CatalogStore:
        """The catalog store of a node home (which must exist)."""
        if not home.is_dir():
            raise InputError(f"{home} is not a node home", code="E_NOT_FOUND")
        return cls(home / "catalog")

    def _load_index(self) -> list[dict[str, Any]]:
        path = self.root / INDEX_NAME
        if not path.exists():
            return []
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise InputError(f"cannot read {path}: {e}", code="E_TAMPERED") from None
        if not isinstance(data, dict) or not isinstance(data.get("versions"), list):
            raise InputError(f"{path} is not a catalog index", code="E_TAMPERED")
        versions: list[dict[str, Any]] = data["versions"]
        return versions

    def versions(self) -> list[CatalogVersion]:
        """Every published version, oldest first, each checked against its digest."""
        out = []
        for entry in self._load_index():
            path = self.root / entry["file"]
            try:
                intact = hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
            except OSError:
                intact = False
            out.append(CatalogVersion(**entry, intact=intact))
        return out

    def latest(self) -> int | None:
        """The newest version number, or None before the first publication."""
        index = self._load_index()
        return index[-1]["version"] if index else None

    def load(self, version: int | None = None) -> tuple[CatalogVersion, Catalog]:
        """Load one version (default: the latest), refusing a file that was changed."""
        index = self._load_index()
        if not index:
            raise InputError("no catalog has been published yet", code="E_NOT_FOUND")
        number = index[-1]["version"] if version is None else version
        entry = next((e for e in index if e["version"] == number), None)
        if entry is None:
            raise InputError(f"no catalog version {number}", code="E_NOT_FOUND")
        path = self.root / entry["file"]
        try:
            data = path.read_bytes()
        except OSError as e:
            raise InputError(f"catalog v{number}: {path}: {e.strerror}", code="E_TAMPERED") from e
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise InputError(
                f"catalog v{number} was modified after publication: {path} no longer matches "
                f"its recorded SHA-256",
                code="E_TAMPERED",
            )
        return CatalogVersion(**entry), parse_catalog(data.decode(), source=str(path))

    def publish(
        self, source: Path, *, now: dt.datetime | None = None
    ) -> tuple[CatalogVersion, bool]:
        """Publish ``source`` as the next version; returns (version, created).

        Content equal to the latest version (comments and layout aside) publishes nothing and
        returns that version with ``created=False``. The latest version must be intact.
        """
        data = _read(source).encode()
        catalog = parse_catalog(data.decode(), source=str(source))
        index = self._load_index()
        if index:
            latest, current = self.load()
            if current.digest() == catalog.digest():
                return latest, False
        number = (index[-1]["version"] + 1) if index else 1
        when = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
        entry = {
            "version": number,
            "file": f"v{number}.toml",
            "sha256": hashlib.sha256(data).hexdigest(),
            "content_sha256": catalog.digest(),
            "published_at": when.isoformat(timespec="seconds"),
            "resources": len(catalog.resources),
        }
        self.root.mkdir(parents=True, exist_ok=True)
        # the version file first (exclusive: a version number is never reused), then the index
        atomic_write(self.root / f"v{number}.toml", data, 0o444, exclusive=True)
        body = json.dumps({"versions": [*index, entry]}, ensure_ascii=False, indent=1)
        atomic_write(self.root / INDEX_NAME, body.encode() + b"\n", 0o644)
        return CatalogVersion(**entry), True  # type: ignore[arg-type]
