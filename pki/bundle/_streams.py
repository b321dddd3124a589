"""Shared pieces of the bundle code: time constants, chunk and size arithmetic, and stream helpers.

Private to :mod:`pki.bundle` (the public names are re-exported there). The helpers read and
write in bounded blocks and never buffer a whole member; :func:`_open_input` turns a missing or
unreadable bundle file into :class:`~exchange_common.errors.InputError`, and
:func:`_require_aware` refuses a naive ``now``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import struct
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, BinaryIO, TypeAlias

from exchange_common.errors import InputError
from pki._bundle_format import (
    INNER_MAGIC,
)

#: How far a bundle's created_at may lie in the future (clocks of two departments differ).
CLOCK_SKEW = dt.timedelta(minutes=5)
#: Default validity of a bundle from its creation.
DEFAULT_TTL = dt.timedelta(days=30)

Progress: TypeAlias = Callable[[int], None]
Source: TypeAlias = Path | BinaryIO

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_CHUNK = 16 * 1024  # Cobblestone plaintext chunk
_CHUNK_OVERHEAD = 16  # GCM tag per chunk
_STREAM_OVERHEAD = 56  # Cobblestone fixed prefix

_MEDIA_TYPES = {
    ".csv": "text/csv",
    ".txt": "text/plain",
    ".json": "application/json",
    ".xml": "application/xml",
    ".pdf": "application/pdf",
    ".zip": "application/zip",
    ".parquet": "application/vnd.apache.parquet",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".xls": "application/vnd.ms-excel",
    ".ofd": "application/ofd",
}


def ciphertext_size(plaintext_size: int) -> int:
    """Exact Cobblestone-128 ciphertext size for a plaintext of ``plaintext_size`` bytes."""
    return plaintext_size + _STREAM_OVERHEAD + _CHUNK_OVERHEAD * (plaintext_size // _CHUNK + 1)


#: The smallest ciphertext that can hold the inner framing (magic, count, manifest length).
_MIN_CIPHERTEXT = ciphertext_size(len(INNER_MAGIC) + 4 + 4)


def guess_media_type(name: str) -> str:
    """Media type from the file extension (a fixed table, not the host's mime database)."""
    return _MEDIA_TYPES.get(Path(name).suffix.lower(), "application/octet-stream")


def _readinto(src: IO[bytes], view: memoryview) -> int:
    """Fill ``view`` as far as the source allows; returns the bytes read (short only at EOF)."""
    readinto = getattr(src, "readinto", None)
    pos = 0
    while pos < len(view):
        if readinto is not None:
            n = readinto(view[pos:])
        else:
            data = src.read(len(view) - pos)
            n = len(data)
            view[pos : pos + n] = data
        if not n:
            break
        pos += n
    return pos


def _read_exact(src: IO[bytes], n: int) -> bytes:
    buf = bytearray(n)
    got = _readinto(src, memoryview(buf))
    return bytes(buf[:got])


def _write_all(out: IO[bytes], data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = out.write(view)
        if n is None or n >= len(view):
            return
        view = view[n:]


@contextlib.contextmanager
def _open_input(source: Source) -> Iterator[IO[bytes]]:
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        try:
            fh = path.open("rb", buffering=0)
        except FileNotFoundError as e:
            raise InputError(f"bundle file not found: {path}", code="E_NOT_FOUND") from e
        except OSError as e:
            raise InputError(f"cannot read bundle file {path}: {e.strerror}", code="E_IO") from e
        with fh:
            yield fh
    else:
        yield source


def _require_aware(now: dt.datetime) -> dt.datetime:
    if now.tzinfo is None:
        raise InputError("time must be timezone-aware", code="E_INPUT")
    return now.astimezone(dt.UTC)


@contextlib.contextmanager
def _hash_threads(
    threaded: bool = True,
) -> Iterator[tuple[ThreadPoolExecutor | None, ThreadPoolExecutor | None]]:
    """Two single-thread executors: plaintext digests and the signed-region digest.

    One thread per hash object keeps each object's updates in order; two of them let the two
    SHA-256 passes run on two cores. For small inputs (receipts, queries) starting threads
    costs more than it saves: ``threaded=False`` yields no executors and hashing stays inline.
    """
    if not threaded:
        yield None, None
        return
    with (
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="bundle-sha-plain") as pt_pool,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="bundle-sha-signed") as ct_pool,
    ):
        yield pt_pool, ct_pool
