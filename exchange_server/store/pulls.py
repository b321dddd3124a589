"""Which outbox files the departments pulled: the record the quota and the retention read.

A department cannot delete from its ``/outbox`` (the SFTP tree is read-only there), so the node
itself notes when a file was downloaded completely (:func:`record_pull`, called by the SFTP
front when such a download is closed). A pulled file no longer counts against the quota
(:func:`pulled_bytes`), and ``[retention] pulled_outbox_days`` later it leaves the outbox for
the node's evidence (:mod:`exchange_server.pipeline.retention`). The first complete pull of a
file is an audit event (``outbox.pulled``): the trail shows when a department received each
receipt and result.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlmodel import Session, col, func, select

from exchange_server.store.audit import append_event
from exchange_server.store.models import BundleState, Department, OutboxPull, Upload, as_utc

__all__ = ["PULL_ACTION", "Usage", "department_usage", "pulled", "pulled_bytes", "record_pull"]

#: The audit action of a department's first complete download of an outbox file.
PULL_ACTION = "outbox.pulled"

#: Names per ``IN (...)`` list: well below every database's parameter limit.
_CHUNK = 500


def record_pull(
    session: Session, dept: str, name: str, size: int, *, address: str | None, now: dt.datetime
) -> bool:
    """Record that ``dept`` downloaded all ``size`` bytes of its outbox file ``name``, inside the
    caller's transaction; True when this is the file's first complete pull (then one audit
    event ``outbox.pulled`` is appended with it), False when it was recorded already.

    A record for the same name with another size (a different file) is replaced. Raises
    ``IntegrityError`` when another process records the same pull at the same moment (the
    caller's transaction is then rolled back; the other record stands).
    """
    row = session.get(OutboxPull, (dept, name))
    if row is not None and row.size == size:
        return False
    if row is None:
        row = OutboxPull(dept_code=dept, name=name, size=size, pulled_at=now)
    else:
        row.size, row.pulled_at = size, now
    session.add(row)
    session.flush()
    append_event(
        session,
        actor="sftp",
        action=PULL_ACTION,
        subject=dept,
        detail={"name": name, "size": size, "address": address},
        now=now,
    )
    return True


def pulled(session: Session, dept: str, names: Iterable[str]) -> dict[str, tuple[int, dt.datetime]]:
    """The recorded pulls among ``names`` of ``dept``'s outbox: name -> (size, pulled_at UTC)."""
    wanted = list(dict.fromkeys(names))
    out: dict[str, tuple[int, dt.datetime]] = {}
    for i in range(0, len(wanted), _CHUNK):
        rows = session.exec(
            select(OutboxPull).where(
                OutboxPull.dept_code == dept, col(OutboxPull.name).in_(wanted[i : i + _CHUNK])
            )
        )
        out.update({r.name: (r.size, as_utc(r.pulled_at)) for r in rows})
    return out


def pulled_bytes(session: Session, dept: str, sizes: Mapping[str, int]) -> int:
    """Of ``sizes`` (outbox name -> size now), the bytes of the files ``dept`` has pulled
    completely: a file counts only when its recorded size is its size now."""
    done = pulled(session, dept, sizes)
    return sum(size for name, size in sizes.items() if done.get(name, (None,))[0] == size)


@dataclass(frozen=True)
class Usage:
    """What counts against a department's quota now (the uploads in progress aside).

    ``outbox_files``/``outbox_bytes``: every regular file in its outbox; ``pulled_bytes``: those
    it downloaded completely (they no longer count); ``waiting_bytes``: its uploads committed
    but not yet verified (``received``). Accepted bundles kept in ``store/`` never count:
    returned data is kept and must not lock a department out.
    """

    outbox_files: int
    outbox_bytes: int
    pulled_bytes: int
    waiting_bytes: int
    quota_bytes: int

    @property
    def counted_bytes(self) -> int:
        """Bytes counted against the quota."""
        return self.outbox_bytes - self.pulled_bytes + self.waiting_bytes


def department_usage(session: Session, outbox: Path, dept: str) -> Usage:
    """The quota rule of the node, for department ``dept`` whose outbox folder is ``outbox``
    (one scan of the folder, two queries). A missing folder is an empty outbox."""
    sizes: dict[str, int] = {}
    with contextlib.suppress(OSError), os.scandir(outbox) as entries:
        for entry in entries:
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False):
                    sizes[entry.name] = entry.stat(follow_symlinks=False).st_size
    waiting = session.exec(
        select(func.coalesce(func.sum(Upload.size), 0)).where(
            Upload.dept_code == dept, Upload.state == BundleState.RECEIVED.value
        )
    ).one()
    row = session.get(Department, dept)
    return Usage(
        outbox_files=len(sizes),
        outbox_bytes=sum(sizes.values()),
        pulled_bytes=pulled_bytes(session, dept, sizes),
        waiting_bytes=int(waiting),
        quota_bytes=row.quota_bytes if row is not None else 0,
    )
