"""What the retention run looks at: every file it may keep, retire or purge, with the facts it
is judged by (:class:`Item`). Reads the spool, the drop folder and the state store; changes
nothing. The judgement is :func:`exchange_server.pipeline.retention.decide`.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from sqlmodel import Session, col, select

from exchange_common.errors import InputError
from exchange_server.node import Node
from exchange_server.store.links import Relation, ids_in, open_work, relations
from exchange_server.store.models import BundleState, Upload, as_utc
from exchange_server.store.pulls import pulled
from pki.bundle import sealed_header
from pki.identity import parse_dept_code

__all__ = ["Item", "Material", "scan"]

#: Files judged per batch of store reads.
_BATCH = 300


class Material(StrEnum):
    """Where a file lies, which decides its period (decision 0013)."""

    STORED = "stored"  # spool/store/<BUNDLE>.bundle: accepted bundles
    OUTBOX = "outbox"  # spool/depts/<CODE>/outbox/<NAME>: what a department may pull
    SENT = "sent"  # spool/sent/<CODE>/<NAME>: sent, pulled, out of the outbox
    QUARANTINE = "quarantine"  # spool/quarantine/<UPLOAD>: rejected uploads
    DROP = "drop"  # HOME/drop/**: removable media


@dataclass(frozen=True)
class Item:
    """One file and the facts it is judged by."""

    material: Material
    path: Path
    #: What the report and the audit event call it: a bundle id, ``CODE/NAME``, an upload id.
    #: Empty for the drop folder, whose file names may name a person.
    label: str
    #: When its period started; None when the store knows nothing of it (it is then kept).
    since: dt.datetime | None
    #: Open work needs it (:func:`~exchange_server.store.links.open_work`).
    needed: bool = False
    #: It belongs to a query (kept at least a report's year of validity).
    of_query: bool = False
    #: Drop folder: a sealed bundle (else plaintext, or anything else that is not one).
    sealed: bool = True
    #: Drop folder: a sealed bundle not imported yet.
    waiting: bool = False
    #: Outbox: when the department pulled it completely.
    pulled_at: dt.datetime | None = None


def _mtime(st: os.stat_result) -> dt.datetime:
    return dt.datetime.fromtimestamp(st.st_mtime, dt.UTC)


def _files(folder: Path) -> Iterator[tuple[Path, os.stat_result]]:
    """Regular files directly in ``folder`` (never through a link, never dot-files: the node's
    own temporary files while it writes atomically)."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            yield Path(entry.path), st


def _batches(
    items: list[tuple[Path, os.stat_result]],
) -> Iterator[list[tuple[Path, os.stat_result]]]:
    for i in range(0, len(items), _BATCH):
        yield items[i : i + _BATCH]


def _latest(*times: dt.datetime | None) -> dt.datetime | None:
    known = [t for t in times if t is not None]
    return max(known) if known else None


def _stored(s: Session, root: Path, needed: frozenset[str]) -> Iterator[Item]:
    files = [(p, st) for p, st in _files(root / "store") if p.suffix == ".bundle"]
    for batch in _batches(files):
        rel = relations(s, {p.stem: {p.stem} for p, _ in batch})
        for path, _ in batch:
            r = rel.get(path.stem)
            # Known only through an upload that was not rejected: a file nothing records is kept.
            since = _latest(r.recorded_at, r.closed_at) if r and r.recorded_at else None
            yield Item(
                Material.STORED,
                path,
                path.stem,
                since,
                needed=path.stem in needed,
                of_query=bool(r and r.of_query),
            )


def _dept_folders(root: Path, *parts: str) -> Iterator[tuple[str, Path]]:
    """``(CODE, root/CODE/parts…)`` for every folder named by a valid department code."""
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except FileNotFoundError:
        return
    for entry in entries:
        try:
            code = parse_dept_code(entry.name)
        except InputError:  # not a department's folder: not ours to judge
            continue
        if entry.is_dir(follow_symlinks=False):
            yield str(code), Path(entry.path).joinpath(*parts)


def _sent(s: Session, root: Path, needed: frozenset[str]) -> Iterator[Item]:
    places = [(Material.OUTBOX, c, f) for c, f in _dept_folders(root / "depts", "outbox")]
    places += [(Material.SENT, c, f) for c, f in _dept_folders(root / "sent")]
    for material, code, folder in places:
        for batch in _batches(list(_files(folder))):
            rel: dict[str, Relation] = relations(s, {p.name: ids_in(p.name) for p, _ in batch})
            pulls = (
                pulled(s, code, [p.name for p, _ in batch]) if material is Material.OUTBOX else {}
            )
            for path, st in batch:
                r = rel.get(path.name, Relation())
                pull = pulls.get(path.name)
                yield Item(
                    material,
                    path,
                    f"{code}/{path.name}",
                    _latest(_mtime(st), r.recorded_at, r.closed_at),
                    needed=bool(ids_in(path.name) & needed),
                    of_query=r.of_query,
                    pulled_at=pull[1] if pull is not None and pull[0] == st.st_size else None,
                )


def _quarantine(s: Session, root: Path) -> Iterator[Item]:
    for batch in _batches(list(_files(root / "quarantine"))):
        names = {p.name.removeprefix("orphan-") for p, _ in batch}
        rows = {u.id: u for u in s.exec(select(Upload).where(col(Upload.id).in_(sorted(names))))}
        for path, st in batch:
            row = rows.get(path.name.removeprefix("orphan-"))
            # An upload not (yet) recorded as rejected may be a crashed rejection the pipeline
            # redoes from this very file (Runner._or_quarantined): never take it away.
            working = row is not None and row.state != BundleState.REJECTED.value
            since = as_utc(row.updated_at) if row is not None else _mtime(st)
            yield Item(Material.QUARANTINE, path, path.name, since, needed=working)


def _drop(folder: Path) -> Iterator[Item]:
    """Every regular file under the drop folder (subfolders too, never through a link)."""
    for top, dirs, files in os.walk(folder, followlinks=False):
        imported = Path(top).relative_to(folder).parts[:1] == (".imported",)
        dirs.sort()
        for name in sorted(files):
            path = Path(top) / name
            try:
                st = path.lstat()
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            sealed = sealed_header(path) is not None
            yield Item(
                Material.DROP,
                path,
                "",
                _mtime(st),
                sealed=sealed,
                waiting=sealed and not imported,
            )


def scan(node: Node, spool_root: Path, drop: Path) -> list[Item]:
    """Every file the retention judges, with its facts, read now (nothing is changed)."""
    with node.session(write=False) as s:
        needed = open_work(s)
        items = [*_stored(s, spool_root, needed), *_sent(s, spool_root, needed)]
        items += _quarantine(s, spool_root)
    items += _drop(drop)
    return items
