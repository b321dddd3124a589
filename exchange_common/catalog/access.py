"""The access rule, a pure function: may department D, for business type B, see resource R and items I?

:func:`check_access` answers with an :class:`AccessDecision` carrying a reason code
(``E_UNKNOWN_RESOURCE``, ``E_NOT_SHARED``, ``E_SCOPE``, ``E_ITEM``) and the items D may see.
No I/O: the caller passes the catalog version it loaded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from exchange_common.catalog.model import (
    Catalog,
    SharingType,
)
from exchange_common.masking import peer_token


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
        return AccessDecision(
            False, "E_UNKNOWN_RESOURCE", f"no resource {peer_token(resource_code)}"
        )
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
                f"{department} may not see {resource.code} for business type "
                f"{peer_token(business_type)}",
            )
        granted = set()
        for rule in rules:
            granted.update(rule.items or resource.item_names)
    wanted = list(dict.fromkeys(items)) if items is not None else None
    if wanted is not None:
        unknown = [i for i in wanted if resource.item(i) is None]
        if unknown:
            shown = ", ".join(peer_token(i) for i in unknown)
            return AccessDecision(
                False,
                "E_ITEM",
                f"{resource.code} has no items {shown} (its items: "
                f"{', '.join(resource.item_names)})",
            )
        denied = [i for i in wanted if i not in granted]
        if denied:
            return AccessDecision(
                False, "E_ITEM", f"{department} may not see items {denied} of {resource.code}"
            )
        granted = set(wanted)
    visible = tuple(n for n in resource.item_names if n in granted)
    return AccessDecision(True, None, "", visible)
