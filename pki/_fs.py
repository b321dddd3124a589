"""Crash-safe file writes shared by every package.

A reader must never see a half-written key, certificate, CRL or bundle: data goes to a
temporary file in the same folder, is flushed and fsynced, then renamed over the target with
``os.replace`` (atomic on POSIX), and the folder itself is fsynced so the rename survives a
power loss.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_output", "atomic_write", "fsync_dir"]


def fsync_dir(path: Path) -> None:
    """Flush a directory entry change (create, rename) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_output(path: Path, mode: int = 0o644, *, exclusive: bool = False) -> Iterator[BinaryIO]:
    """Yield a binary file that appears at ``path`` only if the block completes.

    On any exception the temporary file is removed and ``path`` is untouched. With
    ``exclusive`` the final step refuses to replace an existing file (``FileExistsError``);
    this uses ``os.link`` so the check and the creation are one atomic step.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        if exclusive:
            os.link(tmp, path)
            tmp.unlink()
        else:
            tmp.replace(path)
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write(path: Path, data: bytes, mode: int = 0o644, *, exclusive: bool = False) -> None:
    """Write ``data`` to ``path`` atomically with permissions ``mode`` (see atomic_output)."""
    with atomic_output(path, mode, exclusive=exclusive) as fh:
        fh.write(data)
