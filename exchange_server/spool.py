"""The spool: where bundles live on disk while the node works on them.

::

    spool/incoming/.partial/   uploads in progress (never looked at by the pipeline)
    spool/incoming/<UPLOAD>    complete uploads, named by upload id, waiting for ingest
    spool/store/<BUNDLE>.bundle accepted bundles (evidence, [retention] evidence_days)
    spool/quarantine/<UPLOAD>  rejected uploads, kept [retention] quarantine_days
    spool/depts/<CODE>/outbox/ what a department downloads: receipts, results, relayed queries
    spool/sent/<CODE>/         what it pulled, moved out of its outbox (evidence)

All moves are ``os.replace`` within one filesystem, so a file is always wholly in one place.
Names that come from peers never become path components here: uploads are named by the node's
own UUIDs and bundles by their verified UUID.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from exchange_common.fs import private_dir
from pki.identity import DeptCode, parse_dept_code

__all__ = ["Spool", "unheld"]


@contextlib.contextmanager
def unheld(path: Path) -> Iterator[bool]:
    """True inside the block when nobody holds an ``flock`` on ``path`` (we hold it until the
    block ends); False when a writer does, or the file cannot be opened. Writers lock their
    uploads until they are recorded (:meth:`Handover.accept_upload`), so an unheld file is
    nobody's work in progress."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


class Spool:
    """Paths inside one spool root; creates folders on demand, owner-only (0700)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def _dir(self, *parts: str) -> Path:
        # owner-only: the spool holds sealed personal data and, while a step runs, plaintext
        return private_dir(self.root.joinpath(*parts))

    @property
    def partial(self) -> Path:
        """Uploads in progress; same filesystem as ``incoming`` so commit is a rename."""
        return self._dir("incoming", ".partial")

    @property
    def incoming(self) -> Path:
        """Complete uploads waiting for the pipeline."""
        return self._dir("incoming")

    @property
    def store(self) -> Path:
        """Accepted bundles."""
        return self._dir("store")

    @property
    def quarantine(self) -> Path:
        """Rejected uploads."""
        return self._dir("quarantine")

    def outbox(self, code: str) -> Path:
        """A department's download folder (``/outbox`` over SFTP)."""
        dept: DeptCode = parse_dept_code(code)
        return self._dir("depts", dept, "outbox")

    def new_partial(self) -> tuple[str, Path]:
        """A fresh upload id and the temporary path to write the upload to."""
        upload_id = str(uuid.uuid4())
        return upload_id, self.partial / f"{upload_id}.part"

    def incoming_path(self, upload_id: str) -> Path:
        """Where a committed upload waits."""
        return self.incoming / str(uuid.UUID(upload_id))

    def remove_orphan_partials(self) -> list[Path]:
        """Delete partial uploads no live upload holds (left by a crash); return what was removed.

        A writer holds an exclusive ``flock`` on its partial for the whole upload, so a partial we
        can lock is nobody's: nothing of it was acknowledged, and the sender will retry.
        """
        removed: list[Path] = []
        with os.scandir(self.partial) as entries:
            names = [e.name for e in entries if e.is_file(follow_symlinks=False)]
        for name in names:
            path = self.partial / name
            with unheld(path) as free:
                if free:
                    path.unlink(missing_ok=True)
                    removed.append(path)
        return removed
