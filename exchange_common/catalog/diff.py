"""Human-readable differences between two catalog versions (``exchange-server catalog diff``)."""

from __future__ import annotations

from dataclasses import asdict

from exchange_common.catalog.model import (
    Catalog,
)


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
