"""The query application (查询申请, 部省 第八条) as the node reads it from a bundle's manifest.

:func:`parse_application` is strict: every problem is a :class:`Refusal` ``E_APPLICATION``
naming the field (docs/catalog.md "Query application").
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from exchange_common.errors import InputError
from exchange_common.tables.source import declared_rows
from exchange_server.pipeline.router import Refusal

__all__ = [
    "Application",
    "ResourceRequest",
    "one_table",
    "parse_application",
    "text_field",
]

_TABLE_SUFFIXES = (".csv", ".parquet")

_RESULT_FORMATS = ("csv", "parquet")


@dataclass(frozen=True)
class ResourceRequest:
    """One requested resource: its code, the items wanted (None = all visible), time range."""

    code: str
    items: tuple[str, ...] | None = None
    time_range: str = ""


@dataclass(frozen=True)
class Application:
    """A query application (查询申请, 部省 第八条) as read from the bundle's manifest fields."""

    business_type: str
    purpose: str
    persons: int
    resources: tuple[ResourceRequest, ...]
    result_format: str = "csv"
    provider: str = ""

    def as_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def text_field(fields: Mapping[str, Any], key: str, *, required: bool = True) -> str:
    value = fields.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise Refusal("E_APPLICATION", f"the application lacks '{key}'")
        return ""
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise Refusal("E_APPLICATION", f"application field '{key}' must be text")
    return str(value).strip()


def parse_application(fields: Mapping[str, Any]) -> Application:
    """Read the application from manifest ``fields``; raise :class:`Refusal` E_APPLICATION.

    Keys: ``business_type``, ``purpose``, ``persons`` (count, number or digits), ``resources``
    (a list of codes or of ``{code, items, time_range}`` objects, or one comma-separated text),
    optional ``time_range`` (default for every resource), ``result_format`` (csv|parquet) and
    ``provider`` (全国 / 部中心 / a province, 附表 注2; recorded only).
    """
    business_type = text_field(fields, "business_type")
    purpose = text_field(fields, "purpose")
    count_text = text_field(fields, "persons")
    # At most 9 ASCII digits: a count is never larger, and int() of a hostile 5,000-digit
    # string raises ValueError (Python's integer-string limit), which would make the upload a
    # node fault retried forever instead of a refusal.
    if not re.fullmatch(r"[0-9]{1,9}", count_text, re.ASCII) or int(count_text) < 1:
        raise Refusal(
            "E_APPLICATION",
            "application field 'persons' must be a whole number from 1 to 999999999",
        )
    default_range = text_field(fields, "time_range", required=False)
    raw = fields.get("resources")
    if isinstance(raw, str):
        raw = [c.strip() for c in raw.split(",") if c.strip()]
    if not isinstance(raw, list) or not raw:
        raise Refusal("E_APPLICATION", "the application lacks 'resources'")
    requests: list[ResourceRequest] = []
    for entry in raw:
        if isinstance(entry, str) and entry.strip():
            requests.append(ResourceRequest(entry.strip(), None, default_range))
        elif isinstance(entry, dict) and isinstance(entry.get("code"), str):
            items = entry.get("items")
            if items is not None and (
                not isinstance(items, list) or not all(isinstance(i, str) for i in items)
            ):
                raise Refusal("E_APPLICATION", f"resource {entry['code']}: 'items' must be a list")
            tr = entry.get("time_range", default_range)
            if not isinstance(tr, str):
                raise Refusal("E_APPLICATION", f"resource {entry['code']}: bad 'time_range'")
            requests.append(
                ResourceRequest(entry["code"], tuple(items) if items is not None else None, tr)
            )
        else:
            raise Refusal("E_APPLICATION", "each entry of 'resources' needs a resource code")
    codes = [r.code for r in requests]
    if len(set(codes)) != len(codes):
        raise Refusal("E_APPLICATION", "a resource is requested twice")
    fmt = text_field(fields, "result_format", required=False) or "csv"
    if fmt not in _RESULT_FORMATS:
        raise Refusal("E_APPLICATION", f"result_format must be one of {list(_RESULT_FORMATS)}")
    return Application(
        business_type=business_type,
        purpose=purpose,
        persons=int(count_text),
        resources=tuple(requests),
        result_format=fmt,
        provider=text_field(fields, "provider", required=False),
    )


def one_table(
    paths: Sequence[Path], what: str, max_rows: int, *, persons: int | None = None
) -> Path:
    """The bundle's one table (.csv or .parquet, else ``E_SCHEMA``); a Parquet one is bounded
    from its footer before a row is read: more than ``max_rows`` rows is ``E_LIMIT``, and for a
    persons list (``persons``: the count the application states) another number is ``E_COUNT``
    (the rows are counted again as they are checked)."""
    tables = [p for p in paths if p.suffix.lower() in _TABLE_SUFFIXES]
    if len(tables) != 1:
        raise Refusal(
            "E_SCHEMA", f"{what} needs exactly one table (.csv or .parquet), found {len(tables)}"
        )
    try:
        rows = declared_rows(tables[0])
    except InputError as e:
        raise Refusal(e.code, e.message, detail=e.detail) from None
    if rows is not None and rows > max_rows:
        raise Refusal(
            "E_LIMIT", f"{what}: the table declares {rows} rows, more than the limit {max_rows}"
        )
    if rows is not None and persons is not None and rows != persons:
        raise Refusal(
            "E_COUNT", f"the application states {persons} persons, the table holds {rows}"
        )
    return tables[0]
