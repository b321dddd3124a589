"""Cross-comparison rules (定期交叉比对): an owner's roster against other departments' data.

A rule (``HOME/rules.toml``, example ``config/rules.example.toml``, every key in
``docs/comparison-rules.md``) names an owner department, its roster resource (e.g. ``MZ-DB-01``,
the 低保/特困/低保边缘 recipients) and target resources (cremation records; vehicles, real
estate, business registration). A run finds the roster persons who have records in each target
and delivers the flagged list to the owner as a node-signed ``result`` bundle (谷城: cremation
records against the allowance roll find deceased recipients still paid).

Guarantees:

- Access first: the owner must be allowed (:func:`~exchange_server.data.catalog.check_access`, the
  rule's business type) to see the roster and each target; only the items it may see are
  written. A refused target is reported with its reason code in the summary, never skipped
  silently; a refused roster, or every target refused, fails the run.
- Idempotent per stamp: the bundle's name and id are functions of (rule, stamp), so a run
  repeated with the same stamp after a crash delivers nothing twice and audits once.
- Every run is audited (``compare.run``; failures ``compare.failed``) with counts, reason codes
  and the bundle id, never an ID number or a name; log lines carry counts only.
- Scheduling is a pure function of the rule's schedule, the last run (read from the audit
  trail, no table of its own) and ``now``: :func:`next_due`, :func:`slot_for`.

Parsing and schedule arithmetic are pure; :func:`run_rule`, :func:`rule_status` and
:func:`run_due` do the I/O (store, datasets, spool) for the CLI and the node's pipeline.
"""

# SQL is assembled here on purpose: identifiers are quoted (quote_ident), text and paths are
# literals with quotes doubled (quote_literal), numbers pass through int().
# ruff: noqa: S608

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import shutil
import tomllib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
from sqlalchemy import text
from sqlmodel import Session, col, select

from exchange_common.errors import ExchangeError, InputError
from exchange_common.masking import mask_text
from exchange_server.data.catalog import (
    AccessDecision,
    Catalog,
    CatalogStore,
    Resource,
    TomlFields,
    check_access,
)
from exchange_server.data.datasets import DatasetStore, parquet_source, quote_ident, quote_literal
from exchange_server.data.engine import TimeRange, parse_time_range, time_where
from exchange_server.node import Node
from exchange_server.outbox.results import deliver, result_bundle_id
from exchange_server.spool import Spool
from exchange_server.store.audit import append_event
from exchange_server.store.models import AuditEvent, DatasetVersion, Department, as_utc
from pki.bundle import BundleKind, Member
from pki.identity import parse_dept_code

__all__ = [
    "ACTION_FAILED",
    "ACTION_RUN",
    "RETRY_AFTER",
    "RULES_NAME",
    "DueOutcome",
    "Exclusion",
    "Rule",
    "RuleStatus",
    "RunResult",
    "Schedule",
    "TargetOutcome",
    "bundle_name",
    "find_rule",
    "load_rules",
    "next_due",
    "parse_rules",
    "rule_status",
    "rules_path",
    "run_due",
    "run_rule",
    "slot_for",
    "stamp_of",
]

log = logging.getLogger("exchange_server.data.compare")

#: The rules file in a node home.
RULES_NAME = "rules.toml"
#: Audit actions of a delivered run and of a failed one (the subject is the rule name).
ACTION_RUN = "compare.run"
ACTION_FAILED = "compare.failed"
#: After a failed attempt the schedule tries again no sooner than this (a missing dataset must
#: not turn every pipeline tick into an audit event).
RETRY_AFTER = dt.timedelta(hours=1)
#: Calendar schedules and their periods; ``manual`` rules run on demand only.
SCHEDULES = ("daily", "weekly", "monthly", "manual")
#: Prefix of the target item columns in ``flagged.csv`` (roster items keep their names).
RECORD_PREFIX = "记录."

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,47}$")
_STAMP_FORMAT = "%Y%m%dT%H%M%SZ"


# --------------------------------------------------------------------------- the rules file


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


# --------------------------------------------------------------------------- schedule (pure)


def _utc(when: dt.datetime) -> dt.datetime:
    if when.tzinfo is None:
        raise ValueError("naive datetime: pass an aware time")
    return when.astimezone(dt.UTC)


def _period_start(kind: str, when: dt.datetime) -> dt.datetime:
    day = _utc(when).replace(hour=0, minute=0, second=0, microsecond=0)
    if kind == "weekly":
        return day - dt.timedelta(days=day.weekday())
    if kind == "monthly":
        return day.replace(day=1)
    return day


def _next_period(kind: str, start: dt.datetime) -> dt.datetime:
    if kind == "weekly":
        return start + dt.timedelta(days=7)
    if kind == "monthly":
        year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
        return start.replace(year=year, month=month, day=1)
    return start + dt.timedelta(days=1)


def next_due(
    schedule: Schedule,
    last_run: dt.datetime | None,
    *,
    now: dt.datetime,
    last_failure: dt.datetime | None = None,
) -> dt.datetime | None:
    """When the rule is next due (due when that is at or before ``now``); None for ``manual``.

    Calendar schedules (UTC periods: a day, an ISO week from Monday, a month) are due once per
    period: at the start of the period after the one of ``last_run``. ``every_days`` is due
    ``N`` days after ``last_run``. A rule that never ran is due at ``now``. A failure after the
    last run puts the next attempt at least :data:`RETRY_AFTER` after the failure.
    """
    if schedule.kind == "manual":
        return None
    if last_run is None:
        due = _utc(now)
    elif schedule.kind == "every_days":
        due = _utc(last_run) + dt.timedelta(days=schedule.every_days)
    else:
        due = _next_period(schedule.kind, _period_start(schedule.kind, last_run))
    if last_failure is not None and (last_run is None or last_failure > last_run):
        due = max(due, _utc(last_failure) + RETRY_AFTER)
    return due


def slot_for(schedule: Schedule, last_run: dt.datetime | None, *, now: dt.datetime) -> dt.datetime:
    """The stamp time of a scheduled run at ``now``: the start of the current period (calendar
    schedules), ``last_run`` + N days (``every_days``), or the start of today (never ran).

    A function of the schedule and the last run, not of the clock's seconds: a run retried after
    a crash gets the same stamp, hence the same bundle, and delivers nothing twice.
    """
    if schedule.kind == "every_days" and last_run is not None:
        return _utc(last_run) + dt.timedelta(days=schedule.every_days)
    kind = schedule.kind if schedule.kind in ("weekly", "monthly") else "daily"
    return _period_start(kind, now)


def stamp_of(when: dt.datetime) -> str:
    """The UTC stamp in bundle names: ``20261122T080000Z``."""
    return _utc(when).strftime(_STAMP_FORMAT)


def bundle_name(rule: str, stamp: str) -> str:
    """``compare-<rule>-<stamp>.bundle``."""
    return f"compare-{rule}-{stamp}.bundle"


# --------------------------------------------------------------------------- run results


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


# --------------------------------------------------------------------------- the comparison

_q, _lit = quote_ident, quote_literal


@dataclass
class _Plan:
    """A checked run: what to read and what may be shown."""

    rule: Rule
    catalog_version: int
    roster: Resource
    roster_items: tuple[str, ...]
    targets: list[tuple[Resource, tuple[str, ...]]] = field(default_factory=list)
    outcomes: dict[str, TargetOutcome] = field(default_factory=dict)


def _plan(rule: Rule, catalog: Catalog, catalog_version: int) -> _Plan:
    """Check the rule against the catalog: access to the roster (fatal) and to each target."""
    roster_access = check_access(catalog, rule.owner, rule.business_type, rule.roster)
    roster = catalog.resource(rule.roster)
    if not roster_access.allowed or roster is None:
        raise InputError(
            f"rule {rule.name}: roster refused: {roster_access.message}",
            code=roster_access.reason or "E_UNKNOWN_RESOURCE",
        )
    plan = _Plan(rule, catalog_version, roster, roster_access.items)
    for code in rule.targets:
        decision = check_access(catalog, rule.owner, rule.business_type, code)
        resource = catalog.resource(code)
        excludes = [e for e in rule.excludes if e.target == code]
        hidden = [e.item for e in excludes if e.item not in decision.items]
        if decision.allowed and resource is not None and hidden:
            # filtering on an item the owner may not see would reveal it through the result
            decision = AccessDecision(
                False, "E_ITEM", f"{rule.owner} may not see items {hidden} of {code}"
            )
        if not decision.allowed or resource is None:
            plan.outcomes[code] = TargetOutcome(
                code, False, reason=decision.reason, message=decision.message
            )
            continue
        tr = parse_time_range(rule.time_range)
        if not tr.latest and resource.time_item is None:
            raise InputError(
                f"rule {rule.name}: {code} has no time item: only an empty time_range is possible",
                code="E_TIME_RANGE",
            )
        plan.targets.append((resource, decision.items))
    if not plan.targets:
        reasons = "; ".join(f"{o.resource}: {o.reason}" for o in plan.outcomes.values())
        raise InputError(
            f"rule {rule.name}: the owner may see none of its targets ({reasons})",
            code="E_REFUSED",
        )
    return plan


def _current(store: DatasetStore, code: str, rule: str) -> tuple[list[Path], list[DatasetVersion]]:
    files = store.current_files(code)
    if not files:
        raise InputError(f"rule {rule}: no data has been pushed for {code}", code="E_NO_DATA")
    wanted = set(files)
    versions = [v for v in store.versions(code) if store.root / v.file in wanted]
    return files, versions


def _hits_sql(resource: Resource, items: Sequence[str], source: str, tr: TimeRange) -> str:
    """Records of roster persons in ``source``, with the engine's time-range semantics."""
    key = f"upper(trim(CAST({_q(resource.key_item)} AS VARCHAR)))"
    date = f"CAST({_q(resource.time_item)} AS DATE)" if resource.time_item else "CAST(NULL AS DATE)"
    cols = "".join(f", {_q(i)}" for i in items)
    where = time_where(tr, "_date")
    qualify = (
        "QUALIFY _date IS NOT DISTINCT FROM max(_date) OVER (PARTITION BY _key)"
        if (tr.latest or tr.as_of) and resource.time_item
        else ""
    )
    return (
        f"SELECT * FROM (SELECT {key} AS _key, {date} AS _date{cols} FROM {source}) d "
        f"SEMI JOIN roster r ON d._key = r._key {where} {qualify}"
    )


def _compare(
    plan: _Plan, store: DatasetStore, work: Path, out: Path
) -> tuple[dict[str, Any], int, int, int]:
    """Run the joins; write ``out/flagged.csv``; return (dataset versions, roster persons,
    flagged rows, flagged persons)."""
    rule, roster = plan.rule, plan.roster
    tr = parse_time_range(rule.time_range)
    roster_files, roster_versions = _current(store, roster.code, rule.name)
    inputs = [(r, items, *_current(store, r.code, rule.name)) for r, items in plan.targets]
    versions: dict[str, Any] = {
        roster.code: [v.version for v in roster_versions],
        **{r.code: [v.version for v in vs] for r, _, _, vs in inputs},
    }
    target_cols = list(
        dict.fromkeys(i for r, items, _, _ in inputs for i in items if i != r.key_item)
    )
    con = store.connect(work)
    try:
        order = f"{_q(roster.time_item)} DESC NULLS LAST" if roster.time_item else "1"
        roster_cols = ", ".join(_q(i) for i in plan.roster_items)
        con.execute(
            f"CREATE TEMP TABLE roster AS SELECT * FROM (SELECT "
            f"upper(trim(CAST({_q(roster.key_item)} AS VARCHAR))) AS _key, {roster_cols} "
            f"FROM {parquet_source(roster_files)}) "
            f"QUALIFY row_number() OVER (PARTITION BY _key ORDER BY {order}) = 1"
        )
        (roster_persons,) = con.execute("SELECT count(*) FROM roster").fetchone() or (0,)
        con.execute(
            "CREATE TEMP TABLE flagged AS SELECT 0 AS _pos, _key, CAST(NULL AS DATE) AS _date, "
            f"CAST(NULL AS VARCHAR) AS {_q('比对资源')}, CAST(NULL AS VARCHAR) AS {_q('资源名称')}, "
            f"{roster_cols} FROM roster LIMIT 0"
        )
        for c in target_cols:
            con.execute(f"ALTER TABLE flagged ADD COLUMN {_q(RECORD_PREFIX + c)} VARCHAR")
        for pos, (resource, items, files, vs) in enumerate(inputs):
            shown = [i for i in items if i != resource.key_item]
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE hits AS "
                f"{_hits_sql(resource, shown, parquet_source(files), tr)}"
            )
            excluded = " OR ".join(
                f"CAST(h.{_q(e.item)} AS VARCHAR) IN ({', '.join(_lit(v) for v in e.values)})"
                for e in rule.excludes
                if e.target == resource.code
            )
            keep = f"WHERE NOT coalesce({excluded}, false)" if excluded else ""
            record_values = "".join(
                f", CAST(h.{_q(i)} AS VARCHAR) AS {_q(RECORD_PREFIX + i)}" for i in shown
            )
            roster_values = ", ".join(f"r.{_q(i)}" for i in plan.roster_items)
            con.execute(
                f"INSERT INTO flagged BY NAME SELECT {int(pos)} AS _pos, h._key, h._date, "
                f"{_lit(resource.code)} AS {_q('比对资源')}, {_lit(resource.name)} AS "
                f"{_q('资源名称')}, {roster_values}{record_values} "
                f"FROM hits h JOIN roster r ON h._key = r._key {keep}"
            )
            (hits,) = con.execute("SELECT count(*) FROM hits").fetchone() or (0,)
            (records, persons) = con.execute(
                "SELECT count(*), count(DISTINCT _key) FROM flagged WHERE _pos = ?", [pos]
            ).fetchone() or (0, 0)
            plan.outcomes[resource.code] = TargetOutcome(
                resource.code,
                True,
                name=resource.name,
                items=tuple(items),
                flagged_persons=int(persons),
                records=int(records),
                excluded_records=int(hits) - int(records),
                dataset_versions=tuple(v.version for v in vs),
            )
        (rows, persons) = con.execute(
            "SELECT count(*), count(DISTINCT _key) FROM flagged"
        ).fetchone() or (0, 0)
        shown_cols = ["比对资源", "资源名称", *plan.roster_items]
        shown_cols += [RECORD_PREFIX + c for c in target_cols]
        listed = ", ".join(_q(c) for c in shown_cols)
        con.execute(
            f"COPY (SELECT {listed} FROM flagged ORDER BY _pos, _key, _date NULLS FIRST, "
            f"{listed}) TO {_lit(str(out / 'flagged.csv'))} (FORMAT csv, HEADER)"
        )
    except duckdb.Error as e:
        # DuckDB quotes offending values: mask anything that could be an ID number
        raise InputError(
            f"rule {rule.name}: the comparison failed",
            code="E_ENGINE",
            detail=mask_text(str(e).splitlines()[0])[:200],
        ) from None
    finally:
        con.close()
    return versions, int(roster_persons), int(rows), int(persons)


def _owner_registered(node: Node, owner: str) -> None:
    with node.session(write=False) as s:
        if s.exec(select(Department).where(Department.code == owner)).first() is None:
            raise InputError(f"owner {owner} is not a registered department", code="E_UNKNOWN_DEPT")


def _lock_audit(session: Session) -> None:
    # the same lock append_events takes, taken before our read so that two node processes
    # finishing the same run cannot both find "not audited yet" (SQLite: the writer's
    # BEGIN IMMEDIATE already serialises this transaction)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("LOCK TABLE audit_event IN SHARE ROW EXCLUSIVE MODE"))


def _audited(session: Session, rule: str, bundle_id: str) -> dict[str, Any] | None:
    events = session.exec(
        select(AuditEvent)
        .where(AuditEvent.action == ACTION_RUN, AuditEvent.subject == rule)
        .where(col(AuditEvent.detail).contains(bundle_id))
    )
    for ev in events:
        detail: dict[str, Any] = json.loads(ev.detail)
        if detail.get("bundle_id") == bundle_id:
            return detail
    return None


def run_rule(
    node: Node,
    rule: Rule,
    *,
    now: dt.datetime,
    stamp: dt.datetime | None = None,
    scheduled: bool = False,
    actor: str = "admin",
) -> RunResult:
    """Run ``rule`` and deliver its flagged list to the owner; return counts, never persons.

    The bundle (kind ``result``, signed by the node, encrypted to the owner's certificate) is
    ``compare-<rule>-<stamp>.bundle`` in the owner's outbox with id
    ``result_bundle_id("compare", rule, stamp)``; ``stamp`` defaults to ``now``. Members:
    ``flagged.csv`` (one row per flagged person and target record: the roster items the owner
    sees, then the target's visible items as ``记录.<item>``) and ``summary.json`` (counts per
    target, refusals with reason codes, catalog and dataset versions).

    Idempotent per stamp: if the bundle is already delivered and audited, nothing is read or
    written again and the recorded result is returned (``written`` False). The run is audited
    as ``compare.run``; a failure is audited as ``compare.failed`` and re-raised.

    Raises InputError: ``E_UNKNOWN_DEPT`` (owner not registered), ``E_NOT_FOUND`` (no catalog
    published), the roster's access reason (``E_NOT_SHARED``, ``E_SCOPE``,
    ``E_UNKNOWN_RESOURCE``), ``E_REFUSED`` (no target visible), ``E_TIME_RANGE``,
    ``E_NO_DATA`` (no data pushed for the roster or a visible target), ``E_ENGINE``.
    """
    at = stamp_of(stamp or now)
    try:
        return _run(node, rule, now=now, stamp=at, scheduled=scheduled, actor=actor)
    except ExchangeError as e:
        _audit_failure(node, rule, e, now=now, stamp=at, scheduled=scheduled, actor=actor)
        raise


def _audit_failure(
    node: Node,
    rule: Rule,
    error: ExchangeError,
    *,
    now: dt.datetime,
    stamp: str,
    scheduled: bool,
    actor: str,
) -> None:
    # Messages are built from codes (rule, department, resource, reason), never from data; the
    # engine's own error text, which may quote values, is masked where it is caught.
    log.warning("compare %s failed: %s", rule.name, error.diagnostics())
    detail = {
        "code": error.code,
        "message": error.message,
        "stamp": stamp,
        "scheduled": scheduled,
        "owner": rule.owner,
    }
    try:
        with node.session() as s:
            append_event(
                s, actor=actor, action=ACTION_FAILED, subject=rule.name, detail=detail, now=now
            )
    except Exception:  # the store itself may be what failed: report the original error
        log.exception("compare %s: the failure could not be audited", rule.name)


def _run(
    node: Node, rule: Rule, *, now: dt.datetime, stamp: str, scheduled: bool, actor: str
) -> RunResult:
    spool = Spool(node.config.path(node.config.spool))
    outbox = spool.outbox(rule.owner)
    name = bundle_name(rule.name, stamp)
    bundle_id = str(result_bundle_id("compare", rule.name, stamp))
    if (outbox / name).exists():
        with node.session(write=False) as s:
            done = _audited(s, rule.name, bundle_id)
        if done is not None:
            log.info("compare %s: %s already delivered", rule.name, name)
            return RunResult.from_audit(rule.name, outbox, done)
    _owner_registered(node, rule.owner)
    meta, catalog = CatalogStore.for_home(node.config.home).load()
    plan = _plan(rule, catalog, meta.version)
    store = DatasetStore(node)
    work = spool.root / "work" / name.removesuffix(".bundle")
    shutil.rmtree(work, ignore_errors=True)  # a crashed run's leftovers
    work.mkdir(parents=True, mode=0o700)
    try:
        out = work / "out"
        out.mkdir(mode=0o700)
        versions, roster_persons, rows, flagged = _compare(plan, store, work, out)
        targets = tuple(plan.outcomes[c] for c in rule.targets)
        summary = {
            "rule": rule.name,
            "title": rule.title,
            "owner": rule.owner,
            "business_type": rule.business_type,
            "roster": rule.roster,
            "time_range": rule.time_range,
            "stamp": stamp,
            "run_at": _utc(now).isoformat(timespec="seconds"),
            "scheduled": scheduled,
            "catalog_version": meta.version,
            "dataset_versions": versions,
            "roster_persons": roster_persons,
            "flagged_persons": flagged,
            "records": rows,
            "targets": [t.as_json() for t in targets],
            "refused": [t.as_json() for t in targets if not t.allowed],
            "excludes": rule.as_json()["excludes"],
        }
        (out / "summary.json").write_text(
            json.dumps(summary, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )
        members = [
            Member("flagged.csv", out / "flagged.csv", media_type="text/csv", records=rows),
            Member("summary.json", out / "summary.json", media_type="application/json"),
        ]
        fields = {
            "comparison_rule": rule.name,
            "title": rule.title,
            "stamp": stamp,
            "business_type": rule.business_type,
            "targets": list(rule.targets),
            "flagged_persons": flagged,
        }
        path, written = deliver(
            node,
            spool,
            rule.owner,
            name,
            members,
            kind=BundleKind.RESULT,
            fields=fields,
            bundle_id=uuid.UUID(bundle_id),
            now=now,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = RunResult(
        rule=rule.name,
        owner=rule.owner,
        stamp=stamp,
        bundle=path,
        bundle_id=bundle_id,
        written=written,
        scheduled=scheduled,
        catalog_version=meta.version,
        roster_persons=roster_persons,
        flagged_persons=flagged,
        records=rows,
        targets=targets,
    )
    with node.session() as s:
        _lock_audit(s)
        if _audited(s, rule.name, bundle_id) is None:
            append_event(
                s,
                actor=actor,
                action=ACTION_RUN,
                subject=rule.name,
                detail=result.audit_detail(),
                now=now,
            )
    log.info(
        "compare %s: %d of %d roster person(s) flagged in %d record(s), %d target(s) refused; %s %s",
        rule.name,
        flagged,
        roster_persons,
        rows,
        len(result.refused),
        "delivered" if written else "already in the outbox:",
        name,
    )
    return result


# --------------------------------------------------------------------------- schedule (I/O)


@dataclass(frozen=True)
class RuleStatus:
    """A rule's place in its schedule at ``now``."""

    rule: Rule
    last_run: dt.datetime | None
    last_flagged: int | None
    last_failure: dt.datetime | None
    last_failure_code: str | None
    next_due: dt.datetime | None
    due: bool

    def as_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "rule": self.rule.name,
            "title": self.rule.title,
            "owner": self.rule.owner,
            "schedule": str(self.rule.schedule),
            "enabled": self.rule.enabled,
            "last_run": self.last_run.isoformat() if self.last_run else None,
            "last_flagged": self.last_flagged,
            "last_failure": self.last_failure.isoformat() if self.last_failure else None,
            "last_failure_code": self.last_failure_code,
            "next_due": self.next_due.isoformat() if self.next_due else None,
            "due": self.due,
        }


def _last_event(session: Session, action: str, rule: str) -> AuditEvent | None:
    return session.exec(
        select(AuditEvent)
        .where(AuditEvent.action == action, AuditEvent.subject == rule)
        .order_by(col(AuditEvent.seq).desc())
        .limit(1)
    ).first()


def rule_status(node: Node, rules: Sequence[Rule], *, now: dt.datetime) -> list[RuleStatus]:
    """Each rule's last run and last failure (from the audit trail) and when it is next due.

    A disabled rule is never due (it still runs on demand).
    """
    out = []
    with node.session(write=False) as s:
        for rule in rules:
            run = _last_event(s, ACTION_RUN, rule.name)
            fail = _last_event(s, ACTION_FAILED, rule.name)
            if fail is not None and run is not None and fail.seq < run.seq:
                fail = None  # a success since: the failure no longer matters
            last = as_utc(run.at) if run else None
            failed_at = as_utc(fail.at) if fail else None
            due_at = next_due(rule.schedule, last, now=now, last_failure=failed_at)
            out.append(
                RuleStatus(
                    rule=rule,
                    last_run=last,
                    last_flagged=json.loads(run.detail).get("flagged_persons") if run else None,
                    last_failure=failed_at,
                    last_failure_code=json.loads(fail.detail).get("code") if fail else None,
                    next_due=due_at,
                    due=rule.enabled and due_at is not None and due_at <= _utc(now),
                )
            )
    return out


@dataclass(frozen=True)
class DueOutcome:
    """One rule :func:`run_due` ran: its result, or the error it failed with."""

    rule: str
    result: RunResult | None = None
    error: ExchangeError | None = None

    def as_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        if self.result is not None:
            return {"rule": self.rule, "ok": True, **self.result.as_json()}
        assert self.error is not None
        return {
            "rule": self.rule,
            "ok": False,
            "code": self.error.code,
            "error": self.error.message,
        }


def run_due(
    node: Node, rules: Sequence[Rule], *, now: dt.datetime, actor: str = "node"
) -> list[DueOutcome]:
    """Run every enabled rule that is due at ``now``, each stamped with its slot
    (:func:`slot_for`); what the node's pipeline calls.

    A rule that fails (no data yet, owner not registered, …) is logged and audited and the
    others still run; its next attempt waits :data:`RETRY_AFTER`. Never raises an
    ExchangeError: the outcomes say what happened.
    """
    outcomes = []
    for status in rule_status(node, rules, now=now):
        if not status.due:
            continue
        rule = status.rule
        slot = slot_for(rule.schedule, status.last_run, now=now)
        try:
            result = run_rule(node, rule, now=now, stamp=slot, scheduled=True, actor=actor)
        except ExchangeError as e:
            outcomes.append(DueOutcome(rule.name, error=e))
            continue
        outcomes.append(DueOutcome(rule.name, result=result))
    return outcomes
