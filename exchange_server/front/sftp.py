"""What a department sees over SFTP: a virtual two-folder tree, ``/inbox`` and ``/outbox``.

This is a virtual filesystem, not a chroot onto real folders: every path a client sends is
normalised lexically (:func:`normalise`) and classified (:func:`resolve`) into one of a handful
of virtual places; only two of them ever touch the disk, and then only through a checked name
joined to a folder the node chose:

=================  ===========================================================================
``/``              a directory holding ``inbox`` and ``outbox``
``/inbox``         write-only: ``open`` for writing a *new* name starts an upload; listing it is
                   empty (uploads vanish into the pipeline once committed)
``/inbox/NAME``    an upload of this session (open or committed): ``stat`` shows its size and
                   ``setstat`` is accepted and ignored, because paramiko, lftp and WinSCP check
                   or touch a file after uploading it
``/outbox``        read-only: the regular files of ``Spool.outbox(CODE)`` (never symlinks,
                   never dot-files, never hostile names)
``/outbox/NAME``   one of those files, open for reading only
anything else      "no such file"; every mutating operation is "permission denied"
=================  ===========================================================================

Uploads are atomic. The bytes go to ``spool/incoming/.partial/<upload id>.part`` (``os.pwrite``
at the requested offset, because clients pipeline their writes). Only a close request from the
client (``SSH_FXP_CLOSE``) commits the upload, through :meth:`Handover.accept_upload`, *before* the
client is told it succeeded. When the session ends with the file still open (connection lost,
client killed, channel closed), asyncssh calls the same :meth:`SFTPServer.close` from its
session clean-up; we tell the two apart by the caller (see :func:`_called_by_client_close`) and
discard the partial. A partial left by a crash is removed at the next start
(:meth:`Spool.remove_orphan_partials`); an upload's writer holds an ``flock`` on its partial so that a
second node process sharing the spool never deletes an upload in progress.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import fcntl
import logging
import os
import stat
import sys
import time
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from enum import Enum
from functools import partial
from pathlib import Path
from typing import Any

import asyncssh
from sqlalchemy import func
from sqlmodel import select

from exchange_server.node import Node
from exchange_server.pipeline.handover import Handover
from exchange_server.spool import Spool
from exchange_server.store.models import BundleState, Department, Upload
from pki.identity import DeptCode

__all__ = [
    "MAX_NAME_BYTES",
    "MAX_PATH_BYTES",
    "DepartmentSFTPServer",
    "SFTPServices",
    "SessionInfo",
    "UploadBook",
    "VKind",
    "VPath",
    "commit_on_close_supported",
    "name_problem",
    "normalise",
    "resolve",
]

log = logging.getLogger("exchange_server.front.sftp")

#: Longest file name a department may upload or see (bytes of UTF-8), as in most filesystems.
MAX_NAME_BYTES = 255
#: Longest path a client may send; anything longer names nothing.
MAX_PATH_BYTES = 4096
#: Largest single read served (asyncssh caps requests too; this bounds our own allocation).
_MAX_READ = 256 * 1024
#: Names of this session's committed uploads remembered for stat/setstat after the upload.
_RECENT_UPLOADS = 256

INBOX = "inbox"
OUTBOX = "outbox"


# --- the pure part: path normalisation and name checks --------------------------------------


class VKind(Enum):
    """The places of the virtual tree."""

    ROOT = "root"
    INBOX = "inbox"
    OUTBOX = "outbox"
    INBOX_FILE = "inbox-file"
    OUTBOX_FILE = "outbox-file"
    NOWHERE = "nowhere"


#: An upload starts a background fdatasync after every this many new bytes.
WRITEBACK_BYTES = 32 * 1024 * 1024

#: How long a department's spool usage is reused for quota checks.
USAGE_CACHE_SECONDS = 2.0


@dataclass(frozen=True)
class VPath:
    """A client path, normalised (``path``) and classified (``kind``, ``name``)."""

    kind: VKind
    path: str
    name: str | None = None


_NOWHERE = VPath(VKind.NOWHERE, "")

# Unicode categories refused in names: controls (Cc), invisible format characters such as the
# right-to-left override used to disguise file extensions (Cf), surrogates (Cs), private use
# (Co), unassigned code points (Cn) and line/paragraph separators (Zl, Zp).
_BAD_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def name_problem(name: str) -> str | None:
    """Why ``name`` is not acceptable as a file name in the virtual tree, or ``None`` if it is.

    Every name a peer supplies is hostile (STYLE 8): no separators (``/``, ``\\``), no ``.`` or
    ``..``, no leading dot (hidden files and the node's own ``.partial``), no control or
    invisible characters, at most :data:`MAX_NAME_BYTES` bytes of UTF-8, no surrounding spaces.
    """
    if not name:
        return "empty name"
    if name in {".", ".."}:
        return "relative name"
    if name.startswith("."):
        return "name starts with a dot"
    if "/" in name or "\\" in name:
        return "name contains a path separator"
    if name != name.strip():
        return "name starts or ends with white space"
    for ch in name:
        if unicodedata.category(ch) in _BAD_CATEGORIES:
            return f"name contains a control or invisible character (U+{ord(ch):04X})"
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "name is not valid Unicode"
    if size > MAX_NAME_BYTES:
        return f"name is longer than {MAX_NAME_BYTES} bytes"
    return None


def normalise(path: bytes | str) -> str | None:
    """The virtual absolute path ``path`` denotes, or ``None`` if it denotes nothing at all.

    Lexical, like a chroot: relative paths start at ``/``, ``.`` and empty segments vanish and
    ``..`` never climbs above ``/``. The result always starts with ``/`` and holds no ``.``,
    ``..`` or empty segment, so no output can name anything outside the virtual tree. Paths
    that are not UTF-8, hold NUL or control characters, or exceed :data:`MAX_PATH_BYTES` give
    ``None``.
    """
    if isinstance(path, bytes):
        if len(path) > MAX_PATH_BYTES:
            return None
        try:
            text = path.decode("utf-8")
        except UnicodeDecodeError:
            return None
    else:
        text = path
        try:
            if len(text.encode("utf-8")) > MAX_PATH_BYTES:
                return None
        except UnicodeEncodeError:
            return None
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        return None
    parts: list[str] = []
    for seg in text.split("/"):
        if seg in {"", "."}:
            continue
        if seg == "..":
            if parts:
                parts.pop()
            continue
        parts.append(seg)
    return "/" + "/".join(parts)


def resolve(path: bytes | str) -> VPath:
    """Classify a client path; anything that is not one of the virtual places is NOWHERE."""
    norm = normalise(path)
    if norm is None:
        return _NOWHERE
    parts = [p for p in norm.split("/") if p]
    if not parts:
        return VPath(VKind.ROOT, norm)
    if len(parts) == 1 and parts[0] in {INBOX, OUTBOX}:
        return VPath(VKind.INBOX if parts[0] == INBOX else VKind.OUTBOX, norm)
    if len(parts) == 2 and parts[0] in {INBOX, OUTBOX} and name_problem(parts[1]) is None:
        kind = VKind.INBOX_FILE if parts[0] == INBOX else VKind.OUTBOX_FILE
        return VPath(kind, norm, parts[1])
    return VPath(VKind.NOWHERE, norm)


# --- process-wide services the SFTP sessions share --------------------------------------------


@dataclass(frozen=True)
class SessionInfo:
    """Who is on the other end of an authenticated connection."""

    dept: DeptCode
    address: str


class UploadBook:
    """Uploads in progress in this node process: names per department and bytes per department.

    Used for the "new names only" rule and for the quota, across all connections. Only the
    event loop touches it.
    """

    def __init__(self) -> None:
        self._names: dict[str, set[str]] = {}
        self._bytes: dict[str, int] = {}

    def reserve(self, dept: str, name: str) -> bool:
        """Claim ``name`` for an upload of ``dept``; False if one with that name is under way."""
        names = self._names.setdefault(dept, set())
        if name in names:
            return False
        names.add(name)
        return True

    def grow(self, dept: str, delta: int) -> None:
        """Account ``delta`` more bytes to ``dept``'s uploads in progress."""
        self._bytes[dept] = self._bytes.get(dept, 0) + delta

    def in_flight(self, dept: str) -> int:
        """Bytes of ``dept``'s uploads in progress."""
        return self._bytes.get(dept, 0)

    def release(self, dept: str, name: str, size: int) -> None:
        """An upload ended (committed or discarded): drop its name and bytes."""
        names = self._names.get(dept)
        if names is not None:
            names.discard(name)
            if not names:
                del self._names[dept]
        left = self._bytes.get(dept, 0) - size
        if left > 0:
            self._bytes[dept] = left
        else:
            self._bytes.pop(dept, None)


@dataclass
class SFTPServices:
    """What every SFTP session of one node process needs."""

    node: Node
    ingest: Handover
    executor: Executor
    max_upload_bytes: int
    book: UploadBook = field(default_factory=UploadBook)
    started: int = field(default_factory=lambda: int(time.time()))

    @property
    def spool(self) -> Spool:
        """The node's spool (the one the ingest pipeline reads)."""
        return self.ingest.spool

    _usage_cache: dict[str, tuple[float, tuple[int, int]]] = field(default_factory=dict)

    def usage(self, dept: str) -> tuple[int, int]:
        """``(outstanding bytes, quota)`` of a department; blocking (run it in the executor).

        The answer is cached for :data:`USAGE_CACHE_SECONDS` per department: scanning an outbox
        that holds thousands of receipts at every upload would make each upload slower than
        the last. Within that window a department can exceed its quota by what it uploads
        meanwhile (each upload is still bounded by ``max_upload_bytes``).

        Outstanding = the regular files in its outbox (not yet removed by the node) + its
        uploads committed but still waiting in ``incoming/`` (state ``received``). Uploads in
        progress are added by the caller from :class:`UploadBook`. Accepted bundles kept in
        ``store/`` do not count: returned data is kept for ever and must not lock a department
        out.
        """
        now = time.monotonic()
        cached = self._usage_cache.get(dept)
        if cached is not None and now - cached[0] < USAGE_CACHE_SECONDS:
            return cached[1]
        outbox = 0
        with contextlib.suppress(OSError), os.scandir(self.spool.outbox(dept)) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    if entry.is_file(follow_symlinks=False):
                        outbox += entry.stat(follow_symlinks=False).st_size
        with self.node.session(write=False) as s:
            waiting = s.exec(
                select(func.coalesce(func.sum(Upload.size), 0)).where(
                    Upload.dept_code == dept, Upload.state == BundleState.RECEIVED.value
                )
            ).one()
            row = s.get(Department, dept)
            quota = row.quota_bytes if row is not None else 0
        result = (outbox + int(waiting), quota)
        self._usage_cache[dept] = (now, result)
        return result


# --- the asyncssh adapter ----------------------------------------------------------------------


class _Download:
    """An open ``/outbox`` file: a read-only descriptor."""

    def __init__(self, fd: int, name: str):
        self.fd = fd
        self.name = name
        self.closed = False

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        # asyncssh's ranges@asyncssh.com extension probes holes with seek(SEEK_DATA/SEEK_HOLE).
        return os.lseek(self.fd, offset, whence)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.fd)


class _Upload:
    """An upload in progress: the partial file, its size so far and the limits it must keep."""

    def __init__(
        self,
        *,
        upload_id: str,
        partial: Path,
        fd: int,
        name: str,
        dept: str,
        base_usage: int,
        quota: int,
    ):
        self.upload_id = upload_id
        self.partial = partial
        self.fd = fd
        self.name = name
        self.dept = dept
        self.base_usage = base_usage
        self.quota = quota
        self.size = 0
        self.failed: str | None = None
        self.finished = False
        #: Bytes handed to a background fdatasync so far, and that sync while it runs.
        self.synced = 0
        self.sync: concurrent.futures.Future[None] | None = None

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return os.lseek(self.fd, offset, whence)


def _client_close_code() -> Any:
    handler = getattr(getattr(asyncssh, "sftp", None), "SFTPServerHandler", None)
    method = getattr(handler, "_process_close", None)
    return getattr(method, "__code__", None)


# The code object of asyncssh's handler for SSH_FXP_CLOSE. asyncssh calls SFTPServer.close()
# from exactly two places: that handler (the client closed the file: commit) and the session's
# clean-up (the session ended with the file open: abort). They differ only in the caller. If a
# future asyncssh renames the handler, this is None and every close counts as an abort: uploads
# then fail visibly (the client gets an error), never half-committed.
_CLIENT_CLOSE_CODE = _client_close_code()


def commit_on_close_supported() -> bool:
    """False when this asyncssh no longer has the close handler we recognise (see above):
    every upload would then be discarded, and the server says so loudly at start-up."""
    return _CLIENT_CLOSE_CODE is not None


def _called_by_client_close(depth: int = 2) -> bool:
    """True when the frame ``depth`` levels up is asyncssh's SSH_FXP_CLOSE handler."""
    if _CLIENT_CLOSE_CODE is None:
        return False
    try:
        frame = sys._getframe(depth)
    except ValueError:
        return False
    return frame.f_code is _CLIENT_CLOSE_CODE


def _dir_attrs(mode: int, when: int) -> asyncssh.SFTPAttrs:
    return asyncssh.SFTPAttrs(
        type=asyncssh.FILEXFER_TYPE_DIRECTORY,
        permissions=stat.S_IFDIR | mode,
        uid=0,
        gid=0,
        atime=when,
        mtime=when,
        nlink=2,
    )


def _file_attrs(size: int, mtime: int, mode: int = 0o400) -> asyncssh.SFTPAttrs:
    # Built from scratch: host uid/gid, inode numbers and real modes are not the client's business.
    return asyncssh.SFTPAttrs(
        type=asyncssh.FILEXFER_TYPE_REGULAR,
        size=size,
        permissions=stat.S_IFREG | mode,
        uid=0,
        gid=0,
        atime=mtime,
        mtime=mtime,
        nlink=1,
    )


def _denied(what: str = "permission denied") -> asyncssh.SFTPError:
    return asyncssh.SFTPPermissionDenied(what)


def _missing() -> asyncssh.SFTPError:
    return asyncssh.SFTPNoSuchFile("no such file")


class DepartmentSFTPServer(asyncssh.SFTPServer):
    """One department's SFTP session over the virtual tree (see the module docstring)."""

    def __init__(self, chan: Any, services: SFTPServices, session: SessionInfo):
        super().__init__(chan)
        self._services = services
        self._session = session
        self._outbox = services.spool.outbox(session.dept)
        self._uploads: set[_Upload] = set()
        self._recent: dict[str, int] = {}

    # -- presentation ---------------------------------------------------------------------------

    def format_user(self, uid: int | None) -> str:
        return str(self._session.dept)

    def format_group(self, gid: int | None) -> str:
        return "exchange"

    def map_path(self, path: bytes) -> bytes:
        # Every operation below is overridden; this makes any asyncssh default we missed fail
        # closed instead of touching the host filesystem.
        raise _denied()

    def reverse_map_path(self, path: bytes) -> bytes:
        raise _denied()

    def _attrs(self, vpath: VPath) -> asyncssh.SFTPAttrs:
        when = self._services.started
        if vpath.kind is VKind.ROOT:
            return _dir_attrs(0o500, when)
        if vpath.kind is VKind.INBOX:
            return _dir_attrs(0o300, when)
        if vpath.kind is VKind.OUTBOX:
            return _dir_attrs(0o500, when)
        if vpath.kind is VKind.OUTBOX_FILE:
            assert vpath.name is not None
            try:
                st = os.lstat(self._outbox / vpath.name)
            except OSError:
                raise _missing() from None
            if not stat.S_ISREG(st.st_mode):
                raise _missing()
            return _file_attrs(st.st_size, int(st.st_mtime))
        if vpath.kind is VKind.INBOX_FILE:
            assert vpath.name is not None
            for up in self._uploads:
                if up.name == vpath.name:
                    return _file_attrs(up.size, int(time.time()), 0o200)
            if vpath.name in self._recent:
                return _file_attrs(self._recent[vpath.name], int(time.time()), 0o200)
        raise _missing()

    # -- names and attributes -------------------------------------------------------------------

    def realpath(self, path: bytes) -> bytes:
        norm = normalise(path)
        if norm is None:
            raise _missing()
        return norm.encode("utf-8")

    def stat(self, path: bytes) -> asyncssh.SFTPAttrs:
        return self._attrs(resolve(path))

    def lstat(self, path: bytes) -> asyncssh.SFTPAttrs:
        return self._attrs(resolve(path))

    async def scandir(self, path: bytes) -> AsyncIterator[asyncssh.SFTPName]:
        vpath = resolve(path)
        if vpath.kind not in {VKind.ROOT, VKind.INBOX, VKind.OUTBOX}:
            if vpath.kind in {VKind.INBOX_FILE, VKind.OUTBOX_FILE}:
                raise asyncssh.SFTPNotADirectory("not a directory")
            raise _missing()
        yield asyncssh.SFTPName(b".", attrs=self._attrs(vpath))
        yield asyncssh.SFTPName(b"..", attrs=self._attrs(VPath(VKind.ROOT, "/")))
        if vpath.kind is VKind.ROOT:
            for name, kind in ((INBOX, VKind.INBOX), (OUTBOX, VKind.OUTBOX)):
                yield asyncssh.SFTPName(name.encode(), attrs=self._attrs(VPath(kind, "/" + name)))
        elif vpath.kind is VKind.OUTBOX:
            for name, attrs in self._outbox_entries():
                yield asyncssh.SFTPName(name.encode("utf-8"), attrs=attrs)

    def _outbox_entries(self) -> list[tuple[str, asyncssh.SFTPAttrs]]:
        out: list[tuple[str, asyncssh.SFTPAttrs]] = []
        try:
            with os.scandir(self._outbox) as entries:
                for entry in entries:
                    # Regular files only, never through a symlink; dot-files are the node's own
                    # temporary files (atomic writes) and hostile names are never shown.
                    if name_problem(entry.name) is not None:
                        continue
                    try:
                        if not entry.is_file(follow_symlinks=False):
                            continue
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    out.append((entry.name, _file_attrs(st.st_size, int(st.st_mtime))))
        except OSError as e:
            log.error("cannot list outbox of %s: %s", self._session.dept, e.strerror)
            raise asyncssh.SFTPFailure("outbox unavailable") from None
        out.sort(key=lambda item: item[0])
        return out

    def setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        # Clients that preserve times after an upload touch the file by path: accept and ignore
        # it for this session's own uploads; every other attribute change is refused.
        vpath = resolve(path)
        if vpath.kind is VKind.INBOX_FILE and (
            vpath.name in self._recent or any(u.name == vpath.name for u in self._uploads)
        ):
            return
        if vpath.kind is VKind.NOWHERE:
            raise _missing()
        raise _denied()

    def lsetstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        self.setstat(path, attrs)

    def fsetstat(self, file_obj: object, attrs: asyncssh.SFTPAttrs) -> None:
        # OpenSSH `put -p` sets times and modes on the open handle: harmless, ignored.
        if isinstance(file_obj, _Upload) and not file_obj.finished:
            return
        raise _denied()

    def fstat(self, file_obj: object) -> asyncssh.SFTPAttrs:
        if isinstance(file_obj, _Upload):
            return _file_attrs(file_obj.size, int(time.time()), 0o200)
        if isinstance(file_obj, _Download):
            st = os.fstat(file_obj.fd)
            return _file_attrs(st.st_size, int(st.st_mtime))
        raise asyncssh.SFTPInvalidHandle("invalid handle")

    # -- everything that would change the tree is refused ----------------------------------------

    def _refuse(self, *paths: bytes) -> None:
        if all(resolve(p).kind is VKind.NOWHERE for p in paths):
            raise _missing()
        raise _denied()

    def remove(self, path: bytes) -> None:
        self._refuse(path)

    def mkdir(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        self._refuse(path)

    def rmdir(self, path: bytes) -> None:
        self._refuse(path)

    def rename(self, oldpath: bytes, newpath: bytes) -> None:
        self._refuse(oldpath, newpath)

    def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        self._refuse(oldpath, newpath)

    def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        raise _denied()

    def link(self, oldpath: bytes, newpath: bytes) -> None:
        raise _denied()

    def readlink(self, path: bytes) -> bytes:
        # There are no links in the virtual tree.
        self._attrs(resolve(path))
        raise asyncssh.SFTPInvalidParameter("not a symbolic link")

    def statvfs(self, path: bytes) -> Any:
        raise asyncssh.SFTPOpUnsupported("statvfs is not supported")

    def fstatvfs(self, file_obj: object) -> Any:
        raise asyncssh.SFTPOpUnsupported("statvfs is not supported")

    def lock(self, file_obj: object, offset: int, length: int, flags: int) -> None:
        raise asyncssh.SFTPOpUnsupported("locking is not supported")

    def unlock(self, file_obj: object, offset: int, length: int) -> None:
        raise asyncssh.SFTPOpUnsupported("locking is not supported")

    def fsync(self, file_obj: object) -> None:
        # Durability is the commit's job (accept_upload fsyncs before acknowledging).
        if not isinstance(file_obj, _Upload | _Download):
            raise asyncssh.SFTPInvalidHandle("invalid handle")

    # -- files ------------------------------------------------------------------------------------

    async def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
        vpath = resolve(path)
        writing = pflags & (
            asyncssh.FXF_WRITE | asyncssh.FXF_CREAT | asyncssh.FXF_TRUNC | asyncssh.FXF_APPEND
        )
        if writing:
            return await self._open_upload(vpath, pflags)
        if vpath.kind is VKind.OUTBOX_FILE:
            assert vpath.name is not None
            return self._open_download(vpath.name)
        if vpath.kind is VKind.NOWHERE:
            raise _missing()
        if vpath.kind is VKind.INBOX_FILE:
            raise _denied("the inbox is write-only")
        raise asyncssh.SFTPFailure("is a directory")

    def _open_download(self, name: str) -> _Download:
        # O_NOFOLLOW: a symlink planted in the outbox is never followed; O_NONBLOCK: a FIFO
        # cannot hang the session; the fstat check then admits regular files only.
        try:
            fd = os.open(
                self._outbox / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
            )
        except OSError as e:
            if e.errno in {errno.ENOENT, errno.ELOOP, errno.ENOTDIR}:
                raise _missing() from None
            raise asyncssh.SFTPFailure("cannot open file") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise _missing()
        return _Download(fd, name)

    async def _open_upload(self, vpath: VPath, pflags: int) -> _Upload:
        dept = self._session.dept
        if vpath.kind is not VKind.INBOX_FILE:
            parts = (vpath.path or "/").split("/")
            if len(parts) == 3 and parts[1] == INBOX:
                # /inbox/<hostile name>: say so, the client may be a confused honest one.
                raise asyncssh.SFTPInvalidFilename("file name not acceptable")
            raise _denied("uploads go to /inbox/<name>")
        assert vpath.name is not None
        if pflags & asyncssh.FXF_READ:
            raise _denied("the inbox is write-only")
        if pflags & asyncssh.FXF_APPEND or not pflags & asyncssh.FXF_CREAT:
            raise _denied("uploads must create a new file")
        if pflags & asyncssh.FXF_EXCL and vpath.name in self._recent:
            raise asyncssh.SFTPFileAlreadyExists("file exists")
        if not self._services.book.reserve(dept, vpath.name):
            raise asyncssh.SFTPFileAlreadyExists("an upload with this name is in progress")
        try:
            loop = asyncio.get_running_loop()
            used, quota = await loop.run_in_executor(
                self._services.executor, self._services.usage, dept
            )
            in_flight = self._services.book.in_flight(dept)
            if used + in_flight >= quota:
                log.warning(
                    "upload refused: reason=E_QUOTA dept=%s address=%s used=%d quota=%d",
                    dept,
                    self._session.address,
                    used + in_flight,
                    quota,
                )
                raise asyncssh.SFTPQuotaExceeded("department quota exceeded")
            upload_id, partial_path = self._services.ingest.new_partial()
            fd = os.open(
                partial_path,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
            )
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BaseException:
            self._services.book.release(dept, vpath.name, 0)
            raise
        upload = _Upload(
            upload_id=upload_id,
            partial=partial_path,
            fd=fd,
            name=vpath.name,
            dept=dept,
            base_usage=used,
            quota=quota,
        )
        self._uploads.add(upload)
        log.info("upload %s started by %s from %s", upload_id, dept, self._session.address)
        return upload

    def read(self, file_obj: object, offset: int, size: int) -> bytes:
        if isinstance(file_obj, _Download):
            if file_obj.closed:
                raise asyncssh.SFTPInvalidHandle("invalid handle")
            return os.pread(file_obj.fd, max(0, min(size, _MAX_READ)), offset)
        if isinstance(file_obj, _Upload):
            raise _denied("the inbox is write-only")
        raise asyncssh.SFTPInvalidHandle("invalid handle")

    def write(self, file_obj: object, offset: int, data: bytes) -> int:
        if not isinstance(file_obj, _Upload):
            if isinstance(file_obj, _Download):
                raise _denied("the outbox is read-only")
            raise asyncssh.SFTPInvalidHandle("invalid handle")
        up = file_obj
        if up.finished:
            raise asyncssh.SFTPInvalidHandle("invalid handle")
        if up.failed is not None:
            raise asyncssh.SFTPFailure(up.failed)
        end = offset + len(data)
        growth = max(0, end - up.size)
        book = self._services.book
        if end > self._services.max_upload_bytes:
            self._poison(up, "upload exceeds the maximum upload size", "E_TOO_LARGE")
            raise asyncssh.SFTPQuotaExceeded("upload exceeds the maximum upload size")
        if growth and up.base_usage + book.in_flight(up.dept) + growth > up.quota:
            self._poison(up, "upload exceeds the department quota", "E_QUOTA")
            raise asyncssh.SFTPQuotaExceeded("department quota exceeded")
        view = memoryview(data)
        pos = offset
        try:
            while view:
                n = os.pwrite(up.fd, view, pos)
                view = view[n:]
                pos += n
        except OSError as e:
            self._poison(up, "upload could not be stored", "E_IO", detail=e.strerror)
            if e.errno in {errno.ENOSPC, errno.EDQUOT}:
                raise asyncssh.SFTPNoSpaceOnFilesystem("node is out of space") from None
            raise asyncssh.SFTPFailure("upload could not be stored") from None
        if growth:
            up.size = end
            book.grow(up.dept, growth)
            if up.size - up.synced >= WRITEBACK_BYTES and (up.sync is None or up.sync.done()):
                # Start writing back to disk while the upload continues, so the fsync that
                # must precede the acknowledgement at close finds little left to do.
                up.synced = up.size
                up.sync = self._services.executor.submit(os.fdatasync, up.fd)
        return len(data)

    def _poison(self, up: _Upload, message: str, code: str, detail: str | None = None) -> None:
        # A refused write spoils the whole upload: the partial goes at once (it may be large)
        # and the final close reports failure, so a client that ignores write errors can never
        # commit a file with a hole in it.
        if up.failed is None:
            up.failed = message
            log.warning(
                "upload %s by %s refused: reason=%s%s",
                up.upload_id,
                up.dept,
                code,
                f" ({detail})" if detail else "",
            )
        with contextlib.suppress(OSError):
            os.ftruncate(up.fd, 0)
        self._services.ingest.discard_partial(up.partial)

    def close(self, file_obj: object) -> Awaitable[None] | None:
        if isinstance(file_obj, _Download):
            file_obj.close()
            return None
        if isinstance(file_obj, _Upload):
            if _called_by_client_close():
                return self._commit(file_obj)
            self._abort(file_obj, "session ended before the file was closed")
            return None
        return None

    async def _commit(self, up: _Upload) -> None:
        if up.finished:
            raise asyncssh.SFTPInvalidHandle("invalid handle")
        up.finished = True
        try:
            if up.failed is not None:
                self._services.ingest.discard_partial(up.partial)
                raise asyncssh.SFTPFailure(up.failed)
            loop = asyncio.get_running_loop()
            if up.sync is not None:
                with contextlib.suppress(OSError):  # the fsync in accept_upload has the last word
                    await asyncio.wrap_future(up.sync)
            accept: Callable[[], None] = partial(
                self._services.ingest.accept_upload,
                upload_id=up.upload_id,
                dept=up.dept,
                partial=up.partial,
                file_name=up.name,
                remote_addr=self._session.address,
            )
            try:
                # The partial's descriptor (and flock) stays open until the commit is done.
                await loop.run_in_executor(self._services.executor, accept)
            except Exception as e:
                log.error(
                    "upload %s by %s could not be committed: %s: %s",
                    up.upload_id,
                    up.dept,
                    type(e).__name__,
                    e,
                )
                self._services.ingest.discard_partial(up.partial)
                raise asyncssh.SFTPFailure("upload could not be stored") from None
            self._remember(up.name, up.size)
        finally:
            self._finish(up)

    def _abort(self, up: _Upload, why: str) -> None:
        if up.finished:
            return
        up.finished = True
        try:
            self._services.ingest.discard_partial(up.partial)
            log.warning(
                "upload %s by %s from %s aborted (%s): %d bytes discarded",
                up.upload_id,
                up.dept,
                self._session.address,
                why,
                up.size,
            )
        finally:
            self._finish(up)

    def _finish(self, up: _Upload) -> None:
        if up.sync is not None:  # never close a descriptor a background sync still uses
            with contextlib.suppress(OSError, concurrent.futures.TimeoutError):
                up.sync.result(timeout=60)
        with contextlib.suppress(OSError):
            os.close(up.fd)
        self._uploads.discard(up)
        self._services.book.release(up.dept, up.name, up.size)

    def _remember(self, name: str, size: int) -> None:
        self._recent.pop(name, None)
        self._recent[name] = size
        while len(self._recent) > _RECENT_UPLOADS:
            self._recent.pop(next(iter(self._recent)))

    def exit(self) -> None:
        # asyncssh closes (and so aborts) every open upload before calling this; anything left
        # is discarded here too, so no path leaves a partial behind for a live process.
        for up in list(self._uploads):
            self._abort(up, "session ended")
