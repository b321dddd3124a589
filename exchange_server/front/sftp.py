"""What a department sees over SFTP: a virtual two-folder tree, ``/inbox`` and ``/outbox``.

This is a virtual filesystem, not a chroot onto real folders: every path a client sends is
normalised lexically (:func:`~exchange_server.front.sftp_paths.normalise`) and classified
(:func:`~exchange_server.front.sftp_paths.resolve`) into one of a handful
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
``/outbox/NAME``   one of those files, open for reading only; closing a download that read
                   every byte records a pull (it then leaves the quota, ``store/pulls.py``)
anything else      "no such file"; every mutating operation is "permission denied"
=================  ===========================================================================

Uploads are atomic. The bytes go to ``spool/incoming/.partial/<upload id>.part`` (``os.pwrite``
at the requested offset, because clients pipeline their writes). A file with holes (fewer bytes
received than its size: writes far past the end) is refused at close (``E_SPARSE``), so a few
kilobytes cannot become gigabytes for the pipeline to read. Only a close request from the
client (``SSH_FXP_CLOSE``) commits the upload, through :meth:`Handover.accept_upload`, *before* the
client is told it succeeded. When the session ends with the file still open (connection lost,
client killed, channel closed), asyncssh calls the same :meth:`SFTPServer.close` from its
session clean-up; we tell the two apart by the caller (see :func:`~exchange_server.front.sftp_handles._called_by_client_close`) and
discard the partial. A partial left by a crash is removed at the next start
(:meth:`Spool.remove_orphan_partials`); an upload's writer holds an ``flock`` on its partial so that a
second node process sharing the spool never deletes an upload in progress.

This module is the asyncssh adapter (:class:`DepartmentSFTPServer`). The pure path rules live in
:mod:`~exchange_server.front.sftp_paths`, the process-wide services (upload book, quota usage) in
:mod:`~exchange_server.front.sftp_services`, and the open-file handles, attribute builders and
close-caller detection in :mod:`~exchange_server.front.sftp_handles`.
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
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

import asyncssh

from exchange_server.front.sftp_handles import (
    _called_by_client_close,
    _denied,
    _dir_attrs,
    _Download,
    _file_attrs,
    _missing,
    _Upload,
)
from exchange_server.front.sftp_paths import (
    INBOX,
    OUTBOX,
    VKind,
    VPath,
    name_problem,
    normalise,
    resolve,
)
from exchange_server.front.sftp_services import SessionInfo, SFTPServices

__all__ = [
    "DepartmentSFTPServer",
]

log = logging.getLogger("exchange_server.front.sftp")

#: Largest single read served (asyncssh caps requests too; this bounds our own allocation).
_MAX_READ = 256 * 1024
#: Names of this session's committed uploads remembered for stat/setstat after the upload.
_RECENT_UPLOADS = 256


#: An upload starts a background fdatasync after every this many new bytes.
WRITEBACK_BYTES = 32 * 1024 * 1024


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
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise _missing()
        return _Download(fd, name, st.st_size)

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
            data = os.pread(file_obj.fd, max(0, min(size, _MAX_READ)), offset)
            file_obj.served(offset, len(data))
            return data
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
        up.written += len(data)
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
            # Read in full: a pull, which takes the file out of the quota (store/pulls.py).
            return self._services.pulled(self._session, file_obj) if file_obj.complete else None
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
            if up.written < up.size:
                # Writes far past the end leave holes: a few kilobytes would make gigabytes
                # the pipeline reads. A client writes every byte of a file at least once.
                self._poison(
                    up,
                    f"upload has holes: {up.size - up.written} of {up.size} bytes never written",
                    "E_SPARSE",
                )
            loop = asyncio.get_running_loop()
            if up.failed is None:
                # fail closed at every commit, also on a session that logged in before the CRL
                # went stale (exchange_server.crl)
                crl = await loop.run_in_executor(self._services.executor, self._services.crl)
                if not crl.current:
                    self._poison(
                        up,
                        f"the node's CRL is not current: {crl.message}",
                        crl.code or "E_CRL_STALE",
                    )
            if up.failed is not None:
                self._services.ingest.discard_partial(up.partial)
                raise asyncssh.SFTPFailure(up.failed)
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
