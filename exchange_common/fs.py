"""Crash-safe file writes and file digests shared by every package.

A reader must never see a half-written key, certificate, CRL or bundle: data goes to a
temporary file in the same folder, is flushed and fsynced, then renamed over the target with
``os.replace`` (atomic on POSIX), and the folder itself is fsynced so the rename survives a
power loss.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from exchange_common.errors import InputError

__all__ = [
    "atomic_output",
    "atomic_write",
    "fsync_dir",
    "new_directory",
    "private_dir",
    "require_empty_dir",
    "sha256_file",
]

#: Read size when hashing a file: large enough to be fast, small enough to keep memory flat.
_HASH_BLOCK = 1 << 20


def private_dir(path: Path) -> Path:
    """Make ``path`` and any missing parent a directory only its owner may enter (0700); an
    existing directory is left as it is. Returns ``path``."""
    missing: list[Path] = []
    p = path
    while not p.is_dir():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            if not d.is_dir():
                raise
    return path


def fsync_file(path: Path) -> None:
    """Flush ``path``'s contents to disk (before a rename makes it visible)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Flush a directory entry change (create, rename) to disk."""
    fsync_file(path)


@contextlib.contextmanager
def atomic_output(
    path: Path, mode: int = 0o644, *, exclusive: bool = False, sync_dir: bool = True
) -> Iterator[BinaryIO]:
    """Yield a binary file that appears at ``path`` only if the block completes.

    On any exception the temporary file is removed and ``path`` is untouched. With
    ``exclusive`` the final step refuses to replace an existing file (``FileExistsError``);
    this uses ``os.link`` so the check and the creation are one atomic step. With
    ``sync_dir=False`` the caller promises to fsync the folder itself before it relies on
    the new name (a batch of files then costs one folder fsync).
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
        if sync_dir:
            fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write(path: Path, data: bytes, mode: int = 0o644, *, exclusive: bool = False) -> None:
    """Write ``data`` to ``path`` atomically with permissions ``mode`` (see atomic_output)."""
    with atomic_output(path, mode, exclusive=exclusive) as fh:
        fh.write(data)


def require_empty_dir(path: Path) -> None:
    """Refuse (``E_EXISTS``) a path that exists and is not an empty directory."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise InputError(f"{path} already exists and is not empty", code="E_EXISTS")


@contextlib.contextmanager
def new_directory(target: Path) -> Iterator[Path]:
    """Yield a private (0700) temporary sibling of ``target``; on success it becomes ``target``.

    The caller fills the yielded folder; when the block completes it is renamed into place (an
    empty ``target`` is replaced), so the directory appears complete or not at all. On any
    exception the temporary folder is removed. Raises ``E_EXISTS`` (see
    :func:`require_empty_dir`) and ``E_IO`` when the folder cannot be created.
    """
    target = Path(target)
    require_empty_dir(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError as e:
        raise InputError(f"cannot create {target}: {e.strerror or e}", code="E_IO") from e
    try:
        tmp.chmod(0o700)
        yield tmp
        if target.exists():
            target.rmdir()
        tmp.rename(target)
        fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def sha256_file(path: Path) -> str:
    """Lower-case hex SHA-256 of the file at ``path``, read in 1 MiB blocks (memory stays flat).

    Raises ``OSError`` (``FileNotFoundError``, ``IsADirectoryError``, ...) when the file cannot
    be read; the caller decides what a missing file means.
    """
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(_HASH_BLOCK):
            h.update(block)
    return h.hexdigest()
