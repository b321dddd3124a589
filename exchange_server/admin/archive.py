"""What ``exchange-server archive get`` gathers: one bundle's evidence, with its receipts and
audit events, copied into a folder with a manifest of SHA-256 digests (部省 第九条: the basis of a
query retrievable within 5 working days; 办法 第十九条: traceable use).

An id is resolved to its *case* (:func:`exchange_server.store.links.case_of`): the uploads that
carried it, and for a query its relays, the providers' answers and the supplements. The folder
then holds every file of the case still on the node:

- ``store/<BUNDLE>.bundle``: accepted bundles as received (signed by their senders);
- ``quarantine/<UPLOAD>``: rejected uploads, while the quarantine keeps them;
- ``outbox/<CODE>/<NAME>`` and ``sent/<CODE>/<NAME>``: what the node sent for it (receipts,
  result segments, relays, notices), signed by the node;
- ``events.json``: every audit event whose subject or detail names one of the case's ids, as
  stored (``exchange-server audit verify`` checks the whole trail; ``audit export --bundle``
  gives an extract with proofs);
- ``manifest.json``: each file with its origin, bundle id, kind, size and SHA-256, and what the
  store records but the node no longer holds (purged: the ``retention.purged`` event says when).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from exchange_common.errors import InputError
from exchange_common.fs import atomic_write, new_directory, private_dir, sha256_file
from exchange_common.masking import mask_id_numbers
from exchange_server.node import Node
from exchange_server.store.links import Case, case_of, ids_in, naming
from exchange_server.store.models import AuditEvent, Query, Upload, as_utc
from pki.bundle import sealed_header

__all__ = ["ARCHIVE_SCHEMA", "gather", "resolve"]

#: The schema of ``manifest.json`` (a field added keeps the version; a field changed bumps it).
ARCHIVE_SCHEMA = "exchange-archive/1"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
#: Where a canonical UUID has its hyphens.
_HYPHENS = frozenset({8, 13, 18, 23})


def _id_prefix(text: str) -> bool:
    """Whether ``text`` is a canonical UUID or its first 8 or more characters (hyphens where
    a UUID has them: an ID number typed by mistake is never taken for one)."""
    return 8 <= len(text) <= 36 and all(
        (c == "-") if i in _HYPHENS else c in "0123456789abcdef" for i, c in enumerate(text)
    )


def _sent_files(spool: Path) -> Iterator[tuple[str, Path]]:
    """``(archive path, file)`` of every file the node sent: in an outbox or in ``sent/``."""
    places = [("outbox", d / "outbox") for d in sorted((spool / "depts").glob("*"))]
    places += [("sent", d) for d in sorted((spool / "sent").glob("*"))]
    for where, folder in places:
        if folder.is_symlink() or not folder.is_dir():
            continue
        code = folder.name if where == "sent" else folder.parent.name
        for f in sorted(folder.iterdir()):
            if not f.name.startswith(".") and f.is_file() and not f.is_symlink():
                yield f"{where}/{code}/{f.name}", f


def _by_prefix(s: Session, prefix: str) -> set[str]:
    like = f"{prefix}%"
    found = set(s.exec(select(Upload.id).where(col(Upload.id).like(like))))
    found |= {
        b for b in s.exec(select(Upload.bundle_id).where(col(Upload.bundle_id).like(like))) if b
    }
    found |= set(s.exec(select(Query.bundle_id).where(col(Query.bundle_id).like(like))))
    return found


def resolve(node: Node, text: str) -> tuple[str, Case, dict[str, Path]]:
    """The full id, its case and the sent files that name it by header (a receipt, result,
    relay or notice asked for by its own bundle id).

    ``text`` is an upload, bundle or query id, or a unique prefix of one (8 characters at
    least) the store knows. Raises ``InputError`` E_USAGE for text that is not an id or an
    ambiguous prefix, E_NOT_FOUND for an id the node never handled.
    """
    wanted = text.strip().lower()
    if not _id_prefix(wanted):
        raise InputError(
            f"{mask_id_numbers(text)!r} is not a bundle, upload or query id", code="E_USAGE"
        )
    spool = node.config.path(node.config.spool)
    with node.session(write=False) as s:
        if not _UUID.fullmatch(wanted):
            found = _by_prefix(s, wanted)
            if len(found) > 1:
                raise InputError(
                    f"{wanted} is the start of {len(found)} ids: give more of it", code="E_USAGE"
                )
            wanted = found.pop() if found else wanted
        case = case_of(s, [wanted])
        named: dict[str, Path] = {}
        if not case.ids and _UUID.fullmatch(wanted):
            for rel, f in _sent_files(spool):
                header = sealed_header(f)
                if header is not None and str(header.bundle_id) == wanted:
                    named[rel] = f
            seeds = {i for rel in named for i in ids_in(Path(rel).name)}
            case = case_of(s, sorted(seeds)) if seeds else case
        if not case.ids and not named:
            raise InputError(
                f"no bundle, upload or query {mask_id_numbers(wanted)} on this node (nor a receipt or result "
                "it sent)",
                code="E_NOT_FOUND",
            )
    return wanted, case, named


def _event(ev: AuditEvent) -> dict[str, Any]:
    return {
        "seq": ev.seq,
        "at": as_utc(ev.at).isoformat(),
        "actor": ev.actor,
        "action": ev.action,
        "subject": mask_id_numbers(ev.subject) if ev.subject else ev.subject,
        "detail": mask_id_numbers(ev.detail),
        "prev_hash": ev.prev_hash,
        "hash": ev.hash,
    }


def _missing(case: Case, held: set[str]) -> list[dict[str, str]]:
    """What the store records for the case that the folder does not hold."""
    out: list[dict[str, str]] = []
    names = {Path(p).name for p in held}
    for u in case.uploads:
        if u.receipt_name and u.receipt_name not in names:
            out.append({"what": u.receipt_name, "why": "receipt sent, no longer held"})
        if u.state == "rejected":
            if u.id not in names and f"orphan-{u.id}" not in names:
                out.append({"what": f"quarantine/{u.id}", "why": "rejected upload, purged"})
        elif u.bundle_id and f"{u.bundle_id}.bundle" not in names:
            out.append({"what": f"store/{u.bundle_id}.bundle", "why": "bundle no longer held"})
    return out


def gather(
    node: Node, requested: str, case: Case, named: dict[str, Path], out: Path, now: dt.datetime
) -> dict[str, Any]:
    """Copy the case's files and audit events into the new folder ``out`` (0700, files 0600;
    it appears complete or not at all) and return the manifest written there as
    ``manifest.json``. Raises ``InputError`` E_EXISTS when ``out`` exists and is not empty,
    E_IO when it cannot be made; ``OSError`` when a file cannot be read."""
    spool = node.config.path(node.config.spool)
    ids = case.ids | {requested}
    files: dict[str, Path] = dict(named)
    for i in sorted(ids):
        stored = spool / "store" / f"{i}.bundle"
        if stored.is_file() and not stored.is_symlink():
            files[f"store/{stored.name}"] = stored
        for name in (i, f"orphan-{i}"):
            q = spool / "quarantine" / name
            if q.is_file() and not q.is_symlink():
                files[f"quarantine/{name}"] = q
    files.update({rel: f for rel, f in _sent_files(spool) if ids_in(Path(rel).name) & ids})
    with node.session(write=False) as s:
        events = [
            _event(ev)
            for ev in s.exec(select(AuditEvent).where(naming(ids)).order_by(col(AuditEvent.seq)))
        ]
    entries: list[dict[str, Any]] = []
    with new_directory(out) as tmp:
        for rel, src in sorted(files.items()):
            target = tmp / rel
            private_dir(target.parent)
            shutil.copyfile(src, target)
            target.chmod(0o600)
            header = sealed_header(target)
            entries.append(
                {
                    "file": rel,
                    "from": str(src.relative_to(spool)),
                    "bundle_id": str(header.bundle_id) if header else None,
                    "kind": header.kind if header else None,
                    "size": target.stat().st_size,
                    "sha256": sha256_file(target),
                }
            )
        body = json.dumps(events, ensure_ascii=False, indent=2).encode()
        atomic_write(tmp / "events.json", body, 0o600)
        manifest: dict[str, Any] = {
            "schema": ARCHIVE_SCHEMA,
            "node": node.config.code,
            "requested": requested,
            "made_at": now.astimezone(dt.UTC).isoformat(timespec="seconds"),
            **case.as_json(),
            "files": entries,
            "events": {
                "file": "events.json",
                "count": len(events),
                "sha256": sha256_file(tmp / "events.json"),
            },
            "missing": _missing(case, set(files)),
        }
        text = json.dumps(manifest, ensure_ascii=False, indent=2) + "\n"
        atomic_write(tmp / "manifest.json", text.encode(), 0o600)
    return manifest
