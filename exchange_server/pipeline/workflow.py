"""The node's work on accepted bundles: formal review, dataset ingest and query answers.

This is the :class:`~exchange_server.pipeline.router.Router` the pipeline uses once a catalog is
published. For every accepted bundle the pipeline calls :meth:`Workflow.review` *before* the
receipt is written, so a refusal arrives as a signed rejection receipt with a reason code, and
then :meth:`Workflow.route` after the receipt.

``data`` (归集, 办法 第八条): the manifest names the resource (``resource``) and ``mode``
(``full`` or ``increment``). Review checks that the resource exists in the latest published
catalog and that the sender is its providing department, then ingests the one table into a new
dataset version (:mod:`exchange_server.data.datasets`); row counts and rejects go into the receipt.

``query`` (查询申请, 部省 第八–九条): the manifest holds the application
(:func:`parse_application`, docs/catalog.md "Query application"); the one table member is the
persons list. Formal review (形式审查) refuses with a reason code:

- ``E_APPLICATION``: a required field is missing or malformed;
- ``E_NO_CATALOG``: no catalog is published on this node;
- ``E_BUSINESS_TYPE``: a business type the catalog does not list;
- ``E_UNKNOWN_RESOURCE``, ``E_NOT_SHARED``, ``E_SCOPE``, ``E_ITEM``: catalog access
  (:func:`~exchange_server.data.catalog.check_access`) for any requested resource;
- ``E_TIME_RANGE``: a malformed range, or a range for a resource without a time item;
- ``E_SCHEMA``: not exactly one persons table, or a required column missing;
- ``E_COUNT``: the persons count stated in the application differs from the table;
- ``E_ID``: an ID number fails GB 11643;
- ``E_AUTHORIZATION``: a person without an authorization reference (先授权、后核对; an
  incomplete authorization suspends the query, 浙江 六(二): it is refused and must be resent).

Route answers the query from the datasets held on the node: per resource the engine's results
and household summary, plus ``report.json``, sealed by the node for the requester as
``result-<QUERY_BUNDLE_ID>.bundle`` (kind ``result``) in its outbox. A resource without data on
the node is reported as ``E_NO_DATA`` in the report. Answering is idempotent: the result's name
and bundle id are functions of the query, so a crash and a second run produce no duplicate.

Plaintext exists only in ``spool/work/<UPLOAD>/`` while a step runs; the normalised persons
list kept between review and route is encrypted under the node data key.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from exchange_common.catalog import Catalog, check_access
from exchange_common.errors import InputError, PeerError
from exchange_server.data.catalog import CatalogStore
from exchange_server.data.datasets import DatasetStore
from exchange_server.data.engine import match, parse_time_range
from exchange_server.data.persons import PERSON_HEADERS, prepare_persons
from exchange_server.node import Node, utcnow
from exchange_server.outbox.writer import Outbox, result_bundle_id
from exchange_server.pipeline.router import AcceptedBundle, Refusal, RouteOutcome
from exchange_server.spool import Spool
from exchange_server.store.audit import append_event
from pki.bundle import BundleKind, Member, open_bundle

__all__ = [
    "PERSON_HEADERS",
    "Application",
    "Refusal",
    "ResourceRequest",
    "Workflow",
    "parse_application",
    "result_name",
]

log = logging.getLogger(__name__)

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


def _text(fields: Mapping[str, Any], key: str, *, required: bool = True) -> str:
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
    business_type = _text(fields, "business_type")
    purpose = _text(fields, "purpose")
    count_text = _text(fields, "persons")
    # At most 9 ASCII digits: a count is never larger, and int() of a hostile 5,000-digit
    # string raises ValueError (Python's integer-string limit), which would make the upload a
    # node fault retried forever instead of a refusal.
    if not re.fullmatch(r"[0-9]{1,9}", count_text, re.ASCII) or int(count_text) < 1:
        raise Refusal(
            "E_APPLICATION",
            "application field 'persons' must be a whole number from 1 to 999999999",
        )
    default_range = _text(fields, "time_range", required=False)
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
    fmt = _text(fields, "result_format", required=False) or "csv"
    if fmt not in _RESULT_FORMATS:
        raise Refusal("E_APPLICATION", f"result_format must be one of {list(_RESULT_FORMATS)}")
    return Application(
        business_type=business_type,
        purpose=purpose,
        persons=int(count_text),
        resources=tuple(requests),
        result_format=fmt,
        provider=_text(fields, "provider", required=False),
    )


def result_name(query_bundle_id: str) -> str:
    """Outbox name of the result of a query (one per query)."""
    return f"result-{query_bundle_id}.bundle"


class Workflow:
    """Review and route accepted bundles against the published catalog and stored datasets."""

    waiting_kinds = frozenset({"recheck", "revocation", "relay", "response"})

    #: Bundles whose step timings are kept (the most recent ones).
    KEEP_TIMINGS = 64

    def __init__(
        self,
        node: Node,
        spool: Spool,
        datasets: DatasetStore | None = None,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.node = node
        self.spool = spool
        self.outbox = Outbox(node, spool)
        self.clock = clock
        self.datasets = datasets or DatasetStore(node)
        self.catalogs = CatalogStore.for_home(node.config.home)
        #: Seconds per step (``open``, ``persons``, ``ingest``, ``match:<CODE>``, ``seal``)
        #: of the bundles this workflow handled lately, by bundle id: for the log and benchmarks.
        self.timings: dict[str, dict[str, float]] = {}
        self._timings_lock = threading.Lock()  # the ingest workers share one workflow

    @contextmanager
    def _timed(self, bundle_id: str, step: str) -> Iterator[None]:
        """Add the wall-clock seconds of the block to ``timings[bundle_id][step]``."""
        started = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - started
            with self._timings_lock:
                steps = self.timings.setdefault(bundle_id, {})
                steps[step] = round(steps.get(step, 0.0) + seconds, 3)
                while len(self.timings) > self.KEEP_TIMINGS:
                    del self.timings[next(iter(self.timings))]

    # ------------------------------------------------------------------ helpers

    def _work(self, upload_id: str) -> Path:
        return self.spool.root / "work" / upload_id

    def _catalog(self) -> tuple[int, Catalog]:
        if self.catalogs.latest() is None:
            raise Refusal("E_NO_CATALOG", "no resource catalog is published on this node")
        version, catalog = self.catalogs.load()
        return version.version, catalog

    def _open(self, bundle: AcceptedBundle, work: Path) -> tuple[dict[str, Any], list[Path]]:
        """Open the stored bundle into ``work/members``; return its fields and member paths."""
        members = work / "members"
        shutil.rmtree(members, ignore_errors=True)
        work.mkdir(parents=True, exist_ok=True, mode=0o700)
        chain, key = self.node.identity()
        try:
            with self._timed(bundle.bundle_id, "open"):
                opened = open_bundle(
                    bundle.path,
                    members,
                    recipient_key=key,
                    recipient_cert=chain[0],
                    trust=self.node.trust(),
                    now=self.clock(),
                    limits=self.node.config.limits,
                )
        except PeerError as e:
            raise Refusal(e.code, e.message, detail=e.detail) from None
        return dict(opened.manifest.fields), list(opened.paths)

    @staticmethod
    def _one_table(paths: list[Path], what: str) -> Path:
        tables = [p for p in paths if p.suffix.lower() in _TABLE_SUFFIXES]
        if len(tables) != 1:
            raise Refusal(
                "E_SCHEMA",
                f"{what} needs exactly one table (.csv or .parquet), found {len(tables)}",
            )
        return tables[0]

    # ------------------------------------------------------------------ review

    def review(self, bundle: AcceptedBundle) -> dict[str, Any]:
        """Check ``bundle`` before its receipt; raise :class:`Refusal` to reject it.

        Idempotent (a crash between review and receipt repeats it with the same outcome).
        Node-side failures raise other exceptions and leave the bundle accepted for a retry.
        """
        work = self._work(bundle.upload_id)
        try:
            if bundle.kind == BundleKind.DATA.value:
                return self._review_data(bundle, work)
            if bundle.kind == BundleKind.QUERY.value:
                return self._review_query(bundle, work)
            return {}
        except Refusal:
            shutil.rmtree(work, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(work / "members", ignore_errors=True)

    def _review_data(self, bundle: AcceptedBundle, work: Path) -> dict[str, Any]:
        catalog_version, catalog = self._catalog()
        fields, paths = self._open(bundle, work)
        code = _text(fields, "resource")
        mode = _text(fields, "mode", required=False) or "full"
        resource = catalog.resource(code)
        if resource is None:
            raise Refusal(
                "E_UNKNOWN_RESOURCE", f"no resource {code!r} in catalog v{catalog_version}"
            )
        if resource.provider != bundle.sender:
            raise Refusal(
                "E_PROVIDER",
                f"only the providing department {resource.provider} may push data for {code}",
            )
        table = self._one_table(paths, "a data push")
        try:
            with self._timed(bundle.bundle_id, "ingest"):
                report = self.datasets.ingest(
                    resource,
                    table,
                    bundle_id=bundle.bundle_id,
                    provider=bundle.sender,
                    mode=mode,
                    catalog_version=catalog_version,
                    work=work,
                    now=self.clock(),
                )
        except InputError as e:
            raise Refusal(e.code, e.message, detail=e.detail) from None
        log.info(
            "dataset %s v%d from %s: %d rows stored, %d rejected",
            code,
            report.version,
            bundle.sender,
            report.stored,
            report.rejected,
        )
        shutil.rmtree(work, ignore_errors=True)
        # receipt fields are plain JSON without decimals: the timing stays in the log
        return {"dataset": {k: v for k, v in report.as_json().items() if k != "seconds"}}

    def _review_query(self, bundle: AcceptedBundle, work: Path) -> dict[str, Any]:
        fields, paths = self._open(bundle, work)
        app = parse_application(fields)
        catalog_version, catalog = self._catalog()
        if catalog.business_types and app.business_type not in catalog.business_types:
            raise Refusal(
                "E_BUSINESS_TYPE",
                f"business type {app.business_type!r} is not in catalog v{catalog_version}",
            )
        for req in app.resources:
            decision = check_access(catalog, bundle.sender, app.business_type, req.code, req.items)
            if not decision.allowed:
                raise Refusal(decision.reason or "E_SCOPE", decision.message)
            resource = catalog.resource(req.code)
            assert resource is not None
            try:
                tr = parse_time_range(req.time_range)
            except InputError as e:
                raise Refusal(e.code, f"{req.code}: {e.message}") from None
            if not tr.latest and resource.time_item is None:
                raise Refusal(
                    "E_TIME_RANGE", f"{req.code} has no time item: only an empty range is possible"
                )
        table = self._one_table(paths, "a query")
        with self._timed(bundle.bundle_id, "persons"):
            count = self._prepare_persons(table, work / "persons.parquet")
        if count != app.persons:
            raise Refusal(
                "E_COUNT",
                f"the application states {app.persons} persons, the table holds {count}",
            )
        body = {"application": app.as_json(), "catalog_version": catalog_version}
        (work / "application.json").write_text(json.dumps(body, ensure_ascii=False), "utf-8")
        return {
            "query": {
                "persons": count,
                "resources": [r.code for r in app.resources],
                "business_type": app.business_type,
                "catalog_version": catalog_version,
            }
        }

    def _prepare_persons(self, table: Path, target: Path) -> int:
        """Check the persons list and write it normalised and encrypted to ``target``;
        the number of rows. Refuses with E_SCHEMA, E_ENCODING, E_ID or E_AUTHORIZATION."""
        con = self.datasets.connect(target.parent)
        try:
            check = prepare_persons(con, table, target)
        except InputError as e:
            raise Refusal(e.code, e.message, detail=e.detail) from None
        finally:
            con.close()
        if check.bad_ids:
            raise Refusal("E_ID", f"{check.bad_ids} ID number(s) fail GB 11643")
        if check.unauthorized:
            raise Refusal(
                "E_AUTHORIZATION",
                f"{check.unauthorized} person(s) lack an authorization reference "
                "(先授权、后核对): the query is suspended until it is resent complete",
            )
        return check.rows

    # ------------------------------------------------------------------ route

    def route(self, bundle: AcceptedBundle) -> RouteOutcome:
        """Answer a query, finish a data push; other kinds wait for their workflows."""
        if bundle.kind == BundleKind.QUERY.value:
            return self._answer(bundle)
        if bundle.kind in self.waiting_kinds:
            return RouteOutcome.WAITING
        return RouteOutcome.DONE

    def _answer(self, bundle: AcceptedBundle) -> RouteOutcome:
        name = result_name(bundle.bundle_id)
        if (self.spool.outbox(bundle.sender) / name).exists():
            shutil.rmtree(self._work(bundle.upload_id), ignore_errors=True)
            return RouteOutcome.DONE
        work = self._work(bundle.upload_id)
        if not (work / "application.json").exists() or not (work / "persons.parquet").exists():
            self.review(bundle)  # crash after the receipt: prepare again (same outcome)
        body = json.loads((work / "application.json").read_text("utf-8"))
        app = parse_application(body["application"])
        catalog_version = int(body["catalog_version"])
        _, catalog = self.catalogs.load(catalog_version)
        now = self.clock()
        out = work / "out"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True, mode=0o700)
        members: list[Member] = []
        report: dict[str, Any] = {
            "query_bundle_id": bundle.bundle_id,
            "business_type": app.business_type,
            "catalog_version": catalog_version,
            "answered_at": now.isoformat(timespec="seconds"),
            "resources": [],
        }
        for req in app.resources:
            resource = catalog.resource(req.code)
            decision = check_access(catalog, bundle.sender, app.business_type, req.code, req.items)
            assert resource is not None and decision.allowed  # checked by review
            versions = self.datasets.versions(req.code)
            files = self.datasets.current_files(req.code)
            entry: dict[str, Any] = {"resource": req.code, "name": resource.name}
            if not files:
                entry |= {"status": "E_NO_DATA", "message": "no data for this resource on the node"}
                report["resources"].append(entry)
                continue
            try:
                with self._timed(bundle.bundle_id, f"match:{req.code}"):
                    result = match(
                        work / "persons.parquet",
                        files,
                        resource,
                        decision.items,
                        out / req.code,
                        time_range=req.time_range,
                        fmt="parquet" if app.result_format == "parquet" else "csv",
                        threads=self.datasets.threads,
                        memory_limit=self.datasets.memory_limit,
                        data_key=self.datasets.data_key(),
                    )
            except InputError as e:  # e.g. a stored dataset the engine cannot read
                log.error("query %s: %s failed: %s", bundle.bundle_id, req.code, e.code)
                entry |= {"status": e.code, "message": "the node could not answer this resource"}
                report["resources"].append(entry)
                continue
            summary = result.as_json()
            entry |= {
                "status": "answered",
                "dataset_version": versions[-1].version,
                "time_range": result.time_range,
                "items": list(result.items),
                **{
                    k: summary[k]
                    for k in (
                        "persons",
                        "duplicates",
                        "matched_persons",
                        "no_record",
                        "records",
                        "households",
                    )
                },
            }
            report["resources"].append(entry)
            suffix = result.results.suffix
            members.append(Member(f"{req.code}-results{suffix}", result.results))
            members.append(Member(f"{req.code}-households{suffix}", result.household_summary))
        body_bytes = json.dumps(report, ensure_ascii=False, indent=2).encode()
        (out / "report.json").write_bytes(body_bytes)
        members.append(Member("report.json", out / "report.json", media_type="application/json"))
        answered = [r for r in report["resources"] if r.get("status") == "answered"]
        fields = {
            "in_reply_to": bundle.bundle_id,
            "status": "answered" if len(answered) == len(app.resources) else "partial",
            "business_type": app.business_type,
            "resources": [r["resource"] for r in report["resources"]],
        }
        with self._timed(bundle.bundle_id, "seal"):
            written = self.outbox.deliver(
                bundle.sender,
                name,
                members,
                kind=BundleKind.RESULT,
                fields=fields,
                bundle_id=result_bundle_id("result", bundle.bundle_id),
                now=now,
            ).written
        if written:
            with self.node.session() as s:
                append_event(
                    s,
                    actor="node",
                    action="query.answered",
                    subject=bundle.bundle_id,
                    detail={
                        "to": bundle.sender,
                        "result": name,
                        "resources": [
                            {
                                k: r.get(k)
                                for k in (
                                    "resource",
                                    "status",
                                    "persons",
                                    "matched_persons",
                                    "records",
                                )
                            }
                            for r in report["resources"]
                        ],
                    },
                    now=now,
                )
        steps = self.timings.get(bundle.bundle_id, {})
        log.info(
            "query %s from %s answered: %d of %d resource(s) (%s)",
            bundle.bundle_id,
            bundle.sender,
            len(answered),
            len(app.resources),
            ", ".join(f"{k} {v:.2f} s" for k, v in steps.items()),
        )
        shutil.rmtree(work, ignore_errors=True)
        return RouteOutcome.DONE
