"""The drop folder: bundles brought on encrypted removable media (办法 第十七条).

An operator copies bundle files into ``HOME/drop/``. The watcher imports every regular file whose
name does not start with ``.`` once it has stopped growing, through the same pipeline and checks
as an SFTP upload; the sender is whoever signed the bundle (there is no login to compare with),
and the receipt goes to that department's outbox. Imported files move to ``drop/.imported/``;
files that cannot be read stay where they are and are logged.

Copy into the drop folder under a dot-name and rename when complete if your tool can; the size
check covers tools that cannot.

Nothing in the drop folder is readable by others: the folder and ``.imported/`` are owner-only
(0700, tightened with a warning when found wider) and every imported file is made 0600. A file
that is not a sealed bundle (a plaintext table dropped by mistake) is deleted by the retention
run ``[retention] drop_plaintext_minutes`` after it arrived
(:mod:`exchange_server.pipeline.retention`).
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from exchange_common.fs import private_dir
from exchange_server.pipeline.handover import Handover

__all__ = ["DropFolder", "owner_only_folder"]

log = logging.getLogger("exchange_server.drop")


def owner_only_folder(folder: Path) -> Path:
    """Make ``folder`` (and missing parents) owner-only (0700); an existing folder that others
    may enter or read is tightened, with a warning. Returns ``folder``. Raises ``OSError`` when
    it cannot be created or changed (not the node's)."""
    private_dir(folder)
    mode = folder.stat().st_mode & 0o777
    if mode & 0o077:
        folder.chmod(0o700)
        log.warning("%s was open to others (mode %o): now 0700", folder, mode)
    return folder


class DropFolder(FileSystemEventHandler):
    """Watches one folder and feeds complete files into the pipeline's :class:`~exchange_server.pipeline.handover.Handover`."""

    def __init__(self, ingest: Handover, folder: Path, *, settle_seconds: float = 1.0):
        super().__init__()
        self.ingest = ingest
        self.folder = Path(folder)
        self.done = self.folder / ".imported"
        self.settle_seconds = settle_seconds
        self._observer: Observer | None = None  # type: ignore[valid-type]
        self._lock = threading.Lock()

    def scan(self) -> list[str]:
        """Import every complete file now; return the upload ids created.

        Sizes are sampled twice, ``settle_seconds`` apart, for all files at once; a file still
        growing is left for the next event or scan.
        """
        ids = []
        with self._lock:
            before = {p: self._size(p) for p in sorted(self.folder.iterdir()) if self._eligible(p)}
            time.sleep(self.settle_seconds)
            for path, size in before.items():
                if size is not None and self._size(path) == size:
                    upload_id = self._import(path)
                    if upload_id is not None:
                        ids.append(upload_id)
        return ids

    @staticmethod
    def _eligible(path: Path) -> bool:
        return not path.name.startswith(".") and not path.is_symlink() and path.is_file()

    @staticmethod
    def _size(path: Path) -> int | None:
        try:
            return path.stat().st_size
        except FileNotFoundError:
            return None

    def _stable(self, path: Path) -> bool:
        before = self._size(path)
        time.sleep(self.settle_seconds)
        return before is not None and self._size(path) == before

    def _import(self, path: Path) -> str | None:
        if not self._eligible(path):
            return None
        upload_id, partial = self.ingest.new_partial()
        try:
            shutil.copyfile(path, partial)
        except OSError as e:
            log.error("cannot import %s from the drop folder: %s", path.name, e.strerror)
            partial.unlink(missing_ok=True)
            return None
        self.ingest.accept_upload(
            upload_id=upload_id,
            dept="",
            partial=partial,
            file_name=path.name,
            remote_addr=None,
            source="drop",
        )
        owner_only_folder(self.done)
        # A crash before this rename re-imports the file on restart; the replay guard then
        # rejects the copy, so nothing is processed twice.
        kept = self.done / f"{upload_id}-{path.name}"
        path.replace(kept)
        try:
            kept.chmod(0o600)  # a regular file: _eligible refused symlinks
        except OSError as e:  # not ours: the folder (0700) still keeps others out
            log.warning("cannot make imported %s owner-only: %s", kept.name, e.strerror)
        log.info("imported %s from the drop folder as upload %s", path.name, upload_id)
        return upload_id

    def on_any_event(self, event: FileSystemEvent) -> None:
        """watchdog callback: a file appeared, was closed or was renamed in."""
        if event.is_directory or event.event_type not in {"created", "closed", "moved"}:
            return
        target = getattr(event, "dest_path", "") or event.src_path
        path = Path(str(target))
        if path.parent != self.folder:
            return
        if not self._stable(path):
            return
        with self._lock:
            self._import(path)

    def start(self) -> None:
        """Make the folder owner-only (0700), import what is already there, then watch for
        more."""
        owner_only_folder(self.folder)
        self.scan()
        observer = Observer()
        observer.schedule(self, str(self.folder), recursive=False)
        observer.daemon = True
        observer.start()
        self._observer = observer

    def stop(self) -> None:
        """Stop watching."""
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
