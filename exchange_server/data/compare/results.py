"""What a comparison run reports: :class:`TargetOutcome` per target and :class:`RunResult`.

Counts, reason codes and versions only, never an ID number or a name; these are what the CLI
prints, ``summary.json`` holds and the audit trail records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TargetOutcome:
    """What one target of a run gave: counts and the items shown, or the refusal's reason."""

    resource: str
    allowed: bool
    name: str = ""
    reason: str | None = None
    message: str = ""
    items: tuple[str, ...] = ()
    flagged_persons: int = 0
    records: int = 0
    excluded_records: int = 0
    dataset_versions: tuple[int, ...] = ()

    def as_json(self) -> dict[str, Any]:
        """JSON-ready form (counts and codes only)."""
        if not self.allowed:
            return {
                "resource": self.resource,
                "allowed": False,
                "reason": self.reason,
                "message": self.message,
            }
        return {
            "resource": self.resource,
            "allowed": True,
            "name": self.name,
            "items": list(self.items),
            "flagged_persons": self.flagged_persons,
            "records": self.records,
            "excluded_records": self.excluded_records,
            "dataset_versions": list(self.dataset_versions),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TargetOutcome:
        """Inverse of :meth:`as_json`."""
        return cls(
            resource=str(data["resource"]),
            allowed=bool(data["allowed"]),
            name=str(data.get("name", "")),
            reason=data.get("reason"),
            message=str(data.get("message", "")),
            items=tuple(data.get("items", ())),
            flagged_persons=int(data.get("flagged_persons", 0)),
            records=int(data.get("records", 0)),
            excluded_records=int(data.get("excluded_records", 0)),
            dataset_versions=tuple(data.get("dataset_versions", ())),
        )


@dataclass(frozen=True)
class RunResult:
    """A delivered run: where the bundle is, and counts per target. No personal data."""

    rule: str
    owner: str
    stamp: str
    bundle: Path
    bundle_id: str
    #: False when the bundle was already in the owner's outbox (a repeated run).
    written: bool
    scheduled: bool
    catalog_version: int
    roster_persons: int
    flagged_persons: int
    records: int
    targets: tuple[TargetOutcome, ...]

    @property
    def refused(self) -> tuple[TargetOutcome, ...]:
        """The targets the owner may not see."""
        return tuple(t for t in self.targets if not t.allowed)

    def audit_detail(self) -> dict[str, Any]:
        """What the audit event records (and :meth:`from_audit` reads back)."""
        return {
            "owner": self.owner,
            "stamp": self.stamp,
            "bundle": self.bundle.name,
            "bundle_id": self.bundle_id,
            "scheduled": self.scheduled,
            "catalog_version": self.catalog_version,
            "roster_persons": self.roster_persons,
            "flagged_persons": self.flagged_persons,
            "records": self.records,
            "targets": [t.as_json() for t in self.targets],
        }

    def as_json(self) -> dict[str, Any]:
        """JSON-ready form for the CLI."""
        return {"rule": self.rule, **self.audit_detail()} | {
            "bundle": str(self.bundle),
            "written": self.written,
        }

    @classmethod
    def from_audit(cls, rule: str, outbox: Path, detail: Mapping[str, Any]) -> RunResult:
        """The result an earlier run recorded in the audit trail (``written`` is False)."""
        return cls(
            rule=rule,
            owner=str(detail["owner"]),
            stamp=str(detail["stamp"]),
            bundle=outbox / str(detail["bundle"]),
            bundle_id=str(detail["bundle_id"]),
            written=False,
            scheduled=bool(detail.get("scheduled", False)),
            catalog_version=int(detail.get("catalog_version", 0)),
            roster_persons=int(detail.get("roster_persons", 0)),
            flagged_persons=int(detail.get("flagged_persons", 0)),
            records=int(detail.get("records", 0)),
            targets=tuple(TargetOutcome.from_json(t) for t in detail.get("targets", ())),
        )
