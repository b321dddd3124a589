"""The comparison rules file (``HOME/rules.toml``): the :class:`Rule` model, parsing and loading.

Pure parsing (:func:`parse_rules`) over TOML text: every key is checked and an unknown key, a
bad name or schedule, or a duplicate rule is an :class:`~exchange_common.errors.InputError`
naming the place; :func:`load_rules` reads the file.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exchange_common.catalog import TomlFields
from exchange_common.errors import InputError
from exchange_server.data.engine import parse_time_range
from pki.identity import parse_dept_code

#: The rules file in a node home.
RULES_NAME = "rules.toml"


#: Calendar schedules and their periods; ``manual`` rules run on demand only.
SCHEDULES = ("daily", "weekly", "monthly", "manual")


_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,47}$")


@dataclass(frozen=True)
class Schedule:
    """When a rule runs by itself: a calendar period (UTC), every N days, or only on demand."""

    kind: str  # one of SCHEDULES, or "every_days"
    every_days: int = 0

    def __str__(self) -> str:
        return f"every {self.every_days} day(s)" if self.kind == "every_days" else self.kind


@dataclass(frozen=True)
class Exclusion:
    """Records of ``target`` whose ``item`` is one of ``values`` are not flagged (e.g. a
    scrapped vehicle, a deregistered business)."""

    target: str
    item: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Rule:
    """One ``[[rule]]`` of the rules file, checked for form (the catalog is checked at run)."""

    name: str
    title: str
    owner: str
    roster: str
    targets: tuple[str, ...]
    business_type: str
    schedule: Schedule
    time_range: str = ""
    enabled: bool = True
    description: str = ""
    excludes: tuple[Exclusion, ...] = ()

    def as_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "title": self.title,
            "owner": self.owner,
            "roster": self.roster,
            "targets": list(self.targets),
            "business_type": self.business_type,
            "time_range": self.time_range,
            "schedule": str(self.schedule),
            "enabled": self.enabled,
            "excludes": [
                {"target": e.target, "item": e.item, "values": list(e.values)}
                for e in self.excludes
            ],
        }


class _Fields(TomlFields):
    """Reads one TOML table of the rules file, naming the place of every error (E_RULES)."""

    source_name = "rules"
    error_code = "E_RULES"

    def texts(self, key: str, default: Sequence[str] = ()) -> tuple[str, ...]:
        """A required list of non-empty strings, stripped (rules have no optional lists)."""
        value = self.table.get(key)
        if value is None:
            raise self.fail(f"missing '{key}'")
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise self.fail(f"'{key}' must be a list of non-empty strings")
        return tuple(v.strip() for v in value)


def _parse_schedule(f: _Fields) -> Schedule:
    has_kind, has_days = "schedule" in f.table, "every_days" in f.table
    if has_kind == has_days:
        raise f.fail(f"give exactly one of 'schedule' ({' | '.join(SCHEDULES)}) or 'every_days'")
    if has_days:
        days = f.table["every_days"]
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 366:
            raise f.fail("'every_days' must be an integer from 1 to 366")
        return Schedule("every_days", days)
    kind = f.table["schedule"]
    if kind not in SCHEDULES:
        raise f.fail(f"'schedule' is {kind!r}; expected one of {', '.join(SCHEDULES)}")
    return Schedule(str(kind))


def _parse_rule(table: Mapping[str, Any], index: int) -> Rule:
    f = _Fields(table, f"rule #{index + 1}")
    name = f.text("name")
    if not _NAME_RE.match(name):
        # the name becomes part of a file name in the owner's outbox
        raise f.fail(f"name {name!r} must be 1-48 of a-z, 0-9 and '-', starting with a-z or 0-9")
    f.where = f"rule {name}"
    f.only(
        "name", "title", "owner", "roster", "targets", "business_type", "time_range",
        "schedule", "every_days", "enabled", "description", "exclude",
    )  # fmt: skip
    try:
        owner = parse_dept_code(f.text("owner"))
    except InputError as e:
        raise f.fail(e.message) from None
    targets = f.texts("targets")
    if not targets:
        raise f.fail("'targets' must name at least one resource")
    if len(set(targets)) != len(targets):
        raise f.fail("'targets' lists a resource twice")
    roster = f.text("roster")
    if roster in targets:
        raise f.fail(f"the roster {roster} cannot also be a target")
    time_range = f.text("time_range", "")
    try:
        parse_time_range(time_range)
    except InputError as e:
        raise f.fail(e.message) from None
    excludes = []
    for n, t in enumerate(f.tables("exclude")):
        ef = _Fields(t, f"rule {name} exclude #{n + 1}")
        ef.only("target", "item", "values")
        ex = Exclusion(ef.text("target"), ef.text("item"), ef.texts("values"))
        if ex.target not in targets:
            raise ef.fail(f"target {ex.target} is not among the rule's targets")
        if not ex.values:
            raise ef.fail("'values' must not be empty")
        excludes.append(ex)
    return Rule(
        name=name,
        title=f.text("title"),
        owner=owner,
        roster=roster,
        targets=targets,
        business_type=f.text("business_type"),
        schedule=_parse_schedule(f),
        time_range=time_range,
        enabled=f.flag("enabled", True),
        description=f.text("description", ""),
        excludes=tuple(excludes),
    )


def parse_rules(text_: str, *, source: str = "rules") -> list[Rule]:
    """Parse and check rules TOML; raises InputError ``E_RULES`` naming the place and the key.

    Checks form only (names, codes, schedule, time range, exclusions); whether the catalog has
    the resources and lets the owner see them is checked when a rule runs.
    """
    try:
        data = tomllib.loads(text_)
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"rules: {source}: not valid TOML: {e}", code="E_RULES") from None
    top = _Fields(data, source)
    top.only("rule")
    rules = [_parse_rule(t, n) for n, t in enumerate(top.tables("rule"))]
    names = [r.name for r in rules]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(f"rules: {source}: rule names appear twice: {dupes}", code="E_RULES")
    return rules


def rules_path(home: Path) -> Path:
    """``HOME/rules.toml``."""
    return Path(home) / RULES_NAME


def load_rules(path: Path, *, missing_ok: bool = False) -> list[Rule]:
    """Read and parse a rules file; a missing file is ``E_RULES`` unless ``missing_ok`` (then
    there are no rules)."""
    try:
        body = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if missing_ok:
            return []
        raise InputError(
            f"no rules file {path}: start from config/rules.example.toml", code="E_RULES"
        ) from None
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}", code="E_RULES") from None
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text", code="E_RULES") from None
    return parse_rules(body, source=str(path))


def find_rule(rules: Sequence[Rule], name: str) -> Rule:
    """The rule called ``name``; raises InputError ``E_UNKNOWN_RULE`` listing the known ones."""
    for rule in rules:
        if rule.name == name:
            return rule
    known = ", ".join(r.name for r in rules) or "none"
    raise InputError(f"no rule {name!r} (rules: {known})", code="E_UNKNOWN_RULE")
