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
A person without an authorization reference (先授权、后核对) does not refuse the query: it is
accepted suspended (浙江 六(二)) until a ``supplement`` completes it (:mod:`.suspension`).

Review also decides, per requested resource, who answers it (the catalog's ``answered_by``)
and until when (working days, :mod:`exchange_common.workdays`): the receipt says so.

Route records the query in the query book (:mod:`exchange_server.pipeline.queries`), sends a
relay to the provider of every resource it keeps, and answers the hosted ones from the datasets
on the node (:mod:`exchange_server.pipeline.answering`) as result segment 1,
``result-<QUERY>-1.bundle``. A hosted resource without data is ``no_data`` there.

``response`` (a provider's answer, ``exchange-client respond``): review checks it names an open
relay of this node (``E_RELAY_UNKNOWN``, ``E_RELAY_CLOSED``), comes from the resource's
provider (``E_PROVIDER``), and holds only persons and items that were asked, with valid values
(:mod:`exchange_server.data.answers`: ``E_NOT_ASKED``, ``E_ANSWER_VALUES``, ``E_SCHEMA``), and
merges it, in the same pass, into the content of the requester's next segment; a refused
answer leaves the relay open. Route places that content in the next segment.
Everything is idempotent: relay and segment names and ids are functions of the query.

Plaintext exists only in ``spool/work/<UPLOAD>/``, a merged answer's folder and a segment's
folder while they wait for the next step; the persons list kept in ``spool/queries/<QUERY>/``
is encrypted under the node data key, and an answer is kept as its signed bundle.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from exchange_common.catalog import Catalog, check_access
from exchange_common.errors import InputError, PeerError
from exchange_common.fs import atomic_write, fsync_dir, fsync_file
from exchange_common.masking import peer_token
from exchange_server.data.catalog import CatalogStore
from exchange_server.data.datasets import DatasetStore
from exchange_server.data.engine import parse_time_range
from exchange_server.data.persons import PERSON_HEADERS, audit_persons, prepare_persons
from exchange_server.node import Node, utcnow
from exchange_server.outbox.writer import Outbox
from exchange_server.pipeline.answering import answer_hosted, check_answer, place_answer
from exchange_server.pipeline.application import (
    Application,
    ResourceRequest,
    one_table,
    parse_application,
    text_field,
)
from exchange_server.pipeline.deadlines import DeadlineKeeper
from exchange_server.pipeline.plans import (
    deadline_from_json,
    deadline_json,
    plan_from_json,
    plan_json,
    plan_resources,
)
from exchange_server.pipeline.queries import PERSONS_AUDIT, QueryBook, result_name
from exchange_server.pipeline.relays import send_relays
from exchange_server.pipeline.router import AcceptedBundle, Refusal, RouteOutcome
from exchange_server.pipeline.suspension import check_supplement, resume
from exchange_server.spool import Spool
from exchange_server.store.models import QueryState, ResourceState
from pki.bundle import BundleKind, open_bundle

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

#: In an answer's or a supplement's work folder: the relay or query it refers to, for route.
_POINTER = "reply.json"
#: What a checked query leaves for route to keep in its folder.
_QUERY_FILES = ("persons.parquet", "application.json", PERSONS_AUDIT)


def _point(work: Path, pointer: dict[str, str]) -> None:
    atomic_write(work / _POINTER, json.dumps(pointer).encode(), 0o600)


class Workflow:
    """Review and route accepted bundles against the published catalog and stored datasets."""

    waiting_kinds = frozenset({"recheck", "revocation", "relay"})

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
        self.book = QueryBook(node, spool, self.datasets, self.outbox, clock=clock)
        self.keeper = DeadlineKeeper(self.book, node.config.deadlines)
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
                    durable=False,  # scratch: after a crash review opens the stored bundle again
                    verified=bundle.verified,
                )
        except PeerError as e:
            raise Refusal(e.code, e.message, detail=e.detail) from None
        return dict(opened.manifest.fields), list(opened.paths)

    def _one_table(self, paths: list[Path], what: str, persons: int | None = None) -> Path:
        return one_table(paths, what, self.node.config.limits.max_table_rows, persons=persons)

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
            if bundle.kind == BundleKind.RESPONSE.value:
                return self._review_response(bundle, work)
            if bundle.kind == BundleKind.SUPPLEMENT.value:
                return self._review_supplement(bundle, work)
            return {}
        except Refusal:
            shutil.rmtree(work, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(work / "members", ignore_errors=True)

    def _review_data(self, bundle: AcceptedBundle, work: Path) -> dict[str, Any]:
        catalog_version, catalog = self._catalog()
        fields, paths = self._open(bundle, work)
        code = text_field(fields, "resource")
        mode = text_field(fields, "mode", required=False) or "full"
        resource = catalog.resource(code)
        if resource is None:
            raise Refusal(
                "E_UNKNOWN_RESOURCE",
                f"no resource {peer_token(code)} in catalog v{catalog_version}",
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
                f"business type {peer_token(app.business_type)} is not in catalog v{catalog_version} "
                f"({', '.join(catalog.business_types)})",
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
        table = self._one_table(paths, "a query", app.persons)
        with self._timed(bundle.bundle_id, "persons"):
            count, unauthorized = self._prepare_persons(table, work / "persons.parquet")
        if count != app.persons:
            raise Refusal(
                "E_COUNT",
                f"the application states {app.persons} persons, the table holds {count}",
            )
        plans, deadline = plan_resources(
            app.resources,
            catalog,
            bundle.sender,
            app.business_type,
            bundle.received_at or self.clock(),
            self.book.calendar(),
        )
        body = {
            "application": app.as_json(),
            "catalog_version": catalog_version,
            "plans": [plan_json(p) for p in plans],
            "deadline": deadline_json(deadline),
            "suspended": unauthorized,
        }
        (work / "application.json").write_text(json.dumps(body, ensure_ascii=False), "utf-8")
        suspended = (
            {"suspended": True, "unauthorized": unauthorized, "due_date": None}
            if unauthorized
            else {}
        )
        return {
            "query": {
                "persons": count,
                "resources": [r.code for r in app.resources],
                "business_type": app.business_type,
                "catalog_version": catalog_version,
                "due_date": deadline.due_date.isoformat() if deadline else None,
                # a suspended query's deadlines count from its supplement: none yet
                "routing": [
                    p.as_json() | ({"due_date": None} if unauthorized else {}) for p in plans
                ],
            }
            | suspended
        }

    def _review_response(self, bundle: AcceptedBundle, work: Path) -> dict[str, Any]:
        """Check a provider's answer to a relay and merge it into segment content for route."""
        fields, paths = self._open(bundle, work)
        rid = text_field(fields, "in_reply_to")
        with self._timed(bundle.bundle_id, "answer"):
            summary = check_answer(
                self.book,
                self.datasets,
                bundle,
                rid,
                lambda: self._one_table(paths, "an answer"),
                work,
                self.clock(),
            )
        _point(work, {"relay_id": rid})
        return {"answer": {k: v for k, v in summary.items() if k != "query_id"}}

    def _merge_answer(self, bundle: AcceptedBundle) -> RouteOutcome:
        """Turn a checked answer into the requester's next segment."""
        try:
            return self._merge(bundle)
        finally:
            shutil.rmtree(self._work(bundle.upload_id), ignore_errors=True)

    def _pointer(self, bundle: AcceptedBundle) -> dict[str, str]:
        """What review of an answer or a supplement left for route in the upload's work folder
        (the relay or query it refers to); after a crash that lost it, review again (the
        same outcome: review of both is idempotent)."""
        path = self._work(bundle.upload_id) / _POINTER
        if not path.exists():
            self.review(bundle)
        pointer: dict[str, str] = json.loads(path.read_text("utf-8"))
        return pointer

    def _merge(self, bundle: AcceptedBundle) -> RouteOutcome:
        row = self.book.by_relay(self._pointer(bundle)["relay_id"])
        assert row is not None  # review found it
        trigger = f"answer:{row.resource}"
        taken = {g.trigger for g in self.book.segments(row.query_id)}
        unused = self.book.answer_folder(row.query_id, bundle.bundle_id)
        if trigger in taken and row.answer_bundle != bundle.bundle_id:
            log.warning("answer %s: relay %s was answered already", bundle.bundle_id, row.relay_id)
            shutil.rmtree(unused, ignore_errors=True)
            return RouteOutcome.DONE
        if trigger not in taken:
            if not ResourceState(row.state).waiting:
                log.warning("answer %s: relay %s is %s", bundle.bundle_id, row.relay_id, row.state)
                shutil.rmtree(unused, ignore_errors=True)
                return RouteOutcome.DONE
            with self._timed(bundle.bundle_id, "place"):
                if not place_answer(self.book, row.query_id, bundle.bundle_id, trigger):
                    # the merged content is gone: merge it again (review is idempotent)
                    self.book.answer_facts(row.query_id, bundle.bundle_id).unlink(missing_ok=True)
                    self.review(bundle)
                    if not place_answer(self.book, row.query_id, bundle.bundle_id, trigger):
                        raise RuntimeError(f"answer {bundle.bundle_id}: merged content missing")
            self.book.assign(
                row.query_id,
                trigger,
                {
                    row.resource: {
                        "state": ResourceState.ANSWERED.value,
                        "answer_bundle": bundle.bundle_id,
                        "answered_at": self.clock(),
                    }
                },
            )
        with self._timed(bundle.bundle_id, "seal"):
            self.book.deliver_pending(row.query_id)
        log.info("answer %s from %s merged for %s", bundle.bundle_id, bundle.sender, row.resource)
        return RouteOutcome.DONE

    def _prepare_persons(self, table: Path, target: Path) -> tuple[int, int]:
        """Check the persons list and write it normalised and encrypted to ``target``: (rows,
        rows without an authorization reference: the query is then suspended, 浙江 六(二)).
        Refuses with E_SCHEMA, E_ENCODING or E_ID."""
        con = self.datasets.connect(target.parent)
        try:
            check = prepare_persons(con, table, target, keep_unauthorized=True)
            if not check.bad_ids:  # the trail's view: keyed digests, on the same connection
                people = audit_persons(con, target, self.node.audit_key())
                (target.parent / PERSONS_AUDIT).write_text(json.dumps(people), "utf-8")
        except InputError as e:
            raise Refusal(e.code, e.message, detail=e.detail) from None
        finally:
            con.close()
        if check.bad_ids:
            raise Refusal("E_ID", f"{check.bad_ids} ID number(s) fail GB 11643")
        return check.rows, check.unauthorized

    def _review_supplement(self, bundle: AcceptedBundle, work: Path) -> dict[str, Any]:
        """Check a supplement to a suspended query (:mod:`.suspension`)."""
        fields, paths = self._open(bundle, work)
        query_id = text_field(fields, "in_reply_to")
        table = self._one_table(paths, "a supplement")
        details = check_supplement(self.book, self.datasets, bundle, query_id, table, work)
        _point(work, {"query_id": query_id})
        return details

    def _resume(self, bundle: AcceptedBundle) -> RouteOutcome:
        """Resume the suspended query a checked supplement completes, then relay and answer it."""
        query_id = self._pointer(bundle)["query_id"]
        received = bundle.received_at or self.clock()
        if resume(self.book, query_id, bundle.bundle_id, received):
            log.info("query %s resumed by supplement %s", query_id, bundle.bundle_id)
        query = self.book.query(query_id)
        if query is not None and query.state == QueryState.OPEN.value:
            self._advance(query_id, bundle.sender)
        shutil.rmtree(self._work(bundle.upload_id), ignore_errors=True)
        return RouteOutcome.DONE

    # ------------------------------------------------------------------ route

    def route(self, bundle: AcceptedBundle) -> RouteOutcome:
        """Open and answer a query, merge a provider's answer; other kinds wait or are done."""
        if bundle.kind == BundleKind.QUERY.value:
            return self._route_query(bundle)
        if bundle.kind == BundleKind.RESPONSE.value:
            return self._merge_answer(bundle)
        if bundle.kind == BundleKind.SUPPLEMENT.value:
            return self._resume(bundle)
        if bundle.kind in self.waiting_kinds:
            return RouteOutcome.WAITING
        return RouteOutcome.DONE

    def settle(self) -> None:
        """Queries closed while their own routing was being recorded leave ``routed``."""
        self.book.finish_closed()

    def _route_query(self, bundle: AcceptedBundle) -> RouteOutcome:
        """Record the query, send its relays, answer its hosted resources (segment 1)."""
        query_id = bundle.bundle_id
        folder = self.book.folder(query_id)
        if self.book.query(query_id) is None:
            work = self._work(bundle.upload_id)
            if not all((work / n).exists() for n in _QUERY_FILES):
                self.review(bundle)  # crash after the receipt: prepare again (same outcome)
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            for name in _QUERY_FILES:
                fsync_file(work / name)  # review wrote them as scratch; the query keeps them
                (work / name).replace(folder / name)
            fsync_dir(folder)
            shutil.rmtree(work, ignore_errors=True)
            body = json.loads((folder / "application.json").read_text("utf-8"))
            app = parse_application(body["application"])
            plans = [plan_from_json(p) for p in body["plans"]]
            self.book.open_query(
                query_id=query_id,
                upload_id=bundle.upload_id,
                requester=bundle.sender,
                business_type=app.business_type,
                catalog_version=int(body["catalog_version"]),
                persons=app.persons,
                received_at=bundle.received_at or self.clock(),
                plans=plans,
                deadline=deadline_from_json(body.get("deadline")),
                suspended=int(body.get("suspended") or 0),
            )
        return self._advance(query_id, bundle.sender)

    def _advance(self, query_id: str, sender: str) -> RouteOutcome:
        """Send an open query's relays and answer its hosted resources; a suspended one waits."""
        folder = self.book.folder(query_id)
        query = self.book.query(query_id)
        assert query is not None
        if query.state == QueryState.SUSPENDED.value:
            return RouteOutcome.WAITING
        body = json.loads((folder / "application.json").read_text("utf-8"))
        app = parse_application(body["application"])
        send_relays(self.book, query_id, purpose=app.purpose, business_type=app.business_type)
        hosted = [r.resource for r in self.book.resources(query_id) if r.routing == "node"]
        assigned = {g.trigger for g in self.book.segments(query_id)}
        if hosted and "engine" not in assigned:
            _, updates = answer_hosted(
                self.book,
                self.datasets,
                query_id,
                hosted,
                app.result_format,
                lambda step: self._timed(query_id, step),
            )
            self.book.assign(query_id, "engine", updates)
        with self._timed(query_id, "seal"):
            self.book.deliver_pending(query_id)
        query = self.book.query(query_id)
        assert query is not None
        steps = self.timings.get(query_id, {})
        log.info(
            "query %s from %s: %s (%s)",
            query_id,
            sender,
            query.state,
            ", ".join(f"{k} {v:.2f} s" for k, v in steps.items()),
        )
        closed = query.state == QueryState.CLOSED.value
        return RouteOutcome.DONE if closed else RouteOutcome.WAITING
