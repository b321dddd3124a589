"""Running one comparison rule: plan, compare, deliver the flagged list, audit.

:func:`run_rule` checks access first (only the items the owner may see are read and written),
compares the owner's roster with each visible target in DuckDB, delivers ``flagged.csv`` and
``summary.json`` as a node-signed ``result`` bundle and audits the run (``compare.run``; a
failure ``compare.failed``). Idempotent per stamp: a repeated run delivers nothing twice and
audits once. Log lines and audit events carry counts and reason codes, never persons.
"""

# SQL is assembled here on purpose: identifiers are quoted (quote_ident), text and paths are
# literals with quotes doubled (quote_literal), numbers pass through int().
# ruff: noqa: S608

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
from sqlalchemy import text
from sqlmodel import Session, col, select

from exchange_common.catalog import AccessDecision, Catalog, Resource, check_access
from exchange_common.errors import ExchangeError, InputError
from exchange_common.masking import mask_text
from exchange_common.tables.formulas import spreadsheet_safe_sql
from exchange_common.tables.sql import quote_ident, quote_literal
from exchange_server.data.catalog import CatalogStore
from exchange_server.data.compare.results import RunResult, TargetOutcome
from exchange_server.data.compare.rules import Rule
from exchange_server.data.compare.schedule import _utc, bundle_name, stamp_of
from exchange_server.data.datasets import DatasetStore, parquet_source
from exchange_server.data.engine import TimeRange, parse_time_range, time_where
from exchange_server.node import Node
from exchange_server.outbox.writer import Outbox, result_bundle_id
from exchange_server.spool import Spool
from exchange_server.store.audit import append_event
from exchange_server.store.models import AuditEvent, DatasetVersion, Department
from pki.bundle import BundleKind, Member

log = logging.getLogger("exchange_server.data.compare")

#: Audit actions of a delivered run and of a failed one (the subject is the rule name).
ACTION_RUN = "compare.run"
ACTION_FAILED = "compare.failed"
#: Prefix of the target item columns in ``flagged.csv`` (roster items keep their names).
RECORD_PREFIX = "记录."


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
        # a CSV for people: text a spreadsheet would run is neutralised (formulas.py)
        types = dict(
            con.execute("SELECT column_name, column_type FROM (DESCRIBE flagged)").fetchall()
        )
        selected = ", ".join(
            f"{spreadsheet_safe_sql(_q(c))} AS {_q(c)}" if types.get(c) == "VARCHAR" else _q(c)
            for c in shown_cols
        )
        con.execute(
            f"COPY (SELECT {selected} FROM flagged ORDER BY _pos, _key, _date NULLS FIRST, "
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
        delivery = Outbox(node, spool).deliver(
            rule.owner,
            name,
            members,
            kind=BundleKind.RESULT,
            fields=fields,
            bundle_id=uuid.UUID(bundle_id),
            now=now,
        )
        path, written = delivery.path, delivery.written
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
