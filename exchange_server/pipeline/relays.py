"""Relays: what the node seals for a provider that keeps a resource's data (DESIGN §5b).

Only what the provider needs to answer: the persons' key (the resource's key item), their
authorization references (授权编号) and, only when the resource sets ``relay_names``, their
names; the items asked, the time range, business type, purpose and the deadline. No household,
no requester. The relay's bundle id and outbox name are functions of the query and resource
(:func:`~exchange_server.pipeline.queries.relay_id`), so a repeated send writes nothing twice.
"""

# SQL is assembled from quoted identifiers and literals only.
# ruff: noqa: S608

from __future__ import annotations

import datetime as dt
import logging
import shutil
import uuid

from exchange_common.errors import InputError
from exchange_common.tables.formulas import spreadsheet_safe_sql
from exchange_common.tables.sql import quote_ident, quote_literal
from exchange_server.data.duck import encrypted_scan
from exchange_server.pipeline.queries import (
    RELAY_PERSON_HEADERS,
    QueryBook,
    relay_name,
)
from exchange_server.store.audit import EventSpec, append_events
from exchange_server.store.models import QueryResource, ResourceState, as_utc
from pki.bundle import BundleKind, Member

__all__ = ["send_relays"]

log = logging.getLogger(__name__)


def send_relays(book: QueryBook, query_id: str, *, purpose: str, business_type: str) -> None:
    """Seal and deliver every relay of the query not yet recorded as sent."""
    for r in book.resources(query_id):
        if r.relay_id is None or r.relay_sent_at is not None:
            continue
        now = book.clock()
        try:
            delivered = _deliver_relay(book, query_id, r, purpose, business_type, now)
        except InputError as e:
            if e.code != "E_UNKNOWN_DEPT":
                raise
            log.error("query %s: provider %s of %s is not registered", query_id, r.provider,
                      r.resource)  # fmt: skip
            book.end_resource(
                query_id, r.resource, ResourceState.FAILED, note="provider not registered",
                by="node",
            )  # fmt: skip
            continue
        with book.node.session() as s:
            row = s.get(QueryResource, r.id)
            assert row is not None
            row.relay_sent_at = now
            s.add(row)
            append_events(
                s,
                [
                    EventSpec(
                        "node",
                        "relay.sent",
                        query_id,
                        {
                            "relay": r.relay_id,
                            "resource": r.resource,
                            "provider": r.provider,
                            "due_date": r.due_date.isoformat() if r.due_date else None,
                            "written": delivered,
                        },
                    )
                ],
                now=now,
            )


def _deliver_relay(
    book: QueryBook,
    query_id: str,
    r: QueryResource,
    purpose: str,
    business_type: str,
    now: dt.datetime,
) -> bool:
    assert r.relay_id is not None
    catalog_version, request = book.request(query_id, r.resource)
    resource = book.catalog_resource(catalog_version, r.resource)
    work = book.folder(query_id) / "relay-work" / r.resource
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, mode=0o700)
    try:
        persons = work / "persons.csv"
        columns = [f"id_number AS {quote_ident(resource.key_item)}"]
        # the provider's staff open this list in a spreadsheet: text it would run is neutralised
        columns.append(
            f"{spreadsheet_safe_sql(quote_ident('authorization'))} "
            f"AS {quote_ident(RELAY_PERSON_HEADERS[0])}"
        )
        if resource.relay_names:
            columns.append(
                f"{spreadsheet_safe_sql('name')} AS {quote_ident(RELAY_PERSON_HEADERS[1])}"
            )
        con = book.datasets.connect(work)
        try:
            source = encrypted_scan(book.folder(query_id) / "persons.parquet")
            con.execute(
                f"COPY (SELECT DISTINCT ON (id_number) {', '.join(columns)} FROM {source} "
                f"ORDER BY id_number) TO {quote_literal(str(persons))} (HEADER, DELIMITER ',')"
            )
            count_row = con.execute(f"SELECT count(DISTINCT id_number) FROM {source}").fetchone()
        finally:
            con.close()
        fields = {
            "relay_id": r.relay_id,
            "resource": r.resource,
            "resource_name": resource.name,
            "key_item": resource.key_item,
            "items": list(request["items"]),
            "time_range": request["time_range"],
            "business_type": business_type,
            "purpose": purpose,
            "persons": int(count_row[0]) if count_row else 0,
            "feedback_days": r.feedback_days,
            "due_date": r.due_date.isoformat() if r.due_date else None,
            "due_at": as_utc(r.due_at).isoformat() if r.due_at else None,
        }
        return book.outbox.deliver(
            r.provider,
            relay_name(r.relay_id),
            [Member("persons.csv", persons)],
            kind=BundleKind.RELAY,
            fields=fields,
            bundle_id=uuid.UUID(r.relay_id),
            now=now,
        ).written
    finally:
        shutil.rmtree(work, ignore_errors=True)
