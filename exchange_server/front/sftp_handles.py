"""Open-file handles and asyncssh helpers for the SFTP adapter.

:class:`_Download` (a read-only ``/outbox`` descriptor) and :class:`_Upload` (a partial file
being written, with its size and limits); the attribute builders that show clients nothing of
the host (no uid/gid, inodes or real modes); the refusal errors; and the detection of who called
``close`` (the client's SSH_FXP_CLOSE commits an upload, the session clean-up discards it).
"""

from __future__ import annotations

import bisect
import concurrent.futures
import os
import stat
import sys
from pathlib import Path
from typing import Any

import asyncssh

__all__ = [
    "commit_on_close_supported",
]


class _Download:
    """An open ``/outbox`` file: a read-only descriptor, and which of its bytes were served
    (clients pipeline their reads, out of order), so that a complete download can be told
    from a partial one (:attr:`complete`) and recorded as a pull."""

    def __init__(self, fd: int, name: str, size: int = 0):
        self.fd = fd
        self.name = name
        self.size = size
        self.closed = False
        #: Served byte ranges ``[start, end)``, sorted and merged.
        self._spans: list[list[int]] = []

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        # asyncssh's ranges@asyncssh.com extension probes holes with seek(SEEK_DATA/SEEK_HOLE).
        return os.lseek(self.fd, offset, whence)

    def served(self, offset: int, length: int) -> None:
        """Note that bytes ``[offset, offset + length)`` were sent to the client."""
        if length <= 0:
            return
        start, end = offset, offset + length
        i = bisect.bisect_left(self._spans, [start, start])
        if i > 0 and self._spans[i - 1][1] >= start:
            i -= 1
        j = i
        while j < len(self._spans) and self._spans[j][0] <= end:
            start, end = min(start, self._spans[j][0]), max(end, self._spans[j][1])
            j += 1
        self._spans[i:j] = [[start, end]]

    @property
    def complete(self) -> bool:
        """Whether every byte of the file (its size at open) was sent; never for an empty one."""
        spans = self._spans
        return self.size > 0 and len(spans) == 1 and spans[0][0] == 0 and spans[0][1] >= self.size

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
        #: Bytes the client actually sent; fewer than ``size`` means the file has holes.
        self.written = 0
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
