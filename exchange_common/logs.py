"""The node's log: where its lines go, their two formats, and the masking no line escapes.

Every handler :func:`install` makes writes through :class:`TextFormatter` or
:class:`JsonFormatter`, and both mask ID numbers in the finished text (the message with its
arguments, an exception's text, a stack) with :func:`~exchange_common.masking.mask_id_numbers`.
No caller can pass an ID number past it, however it logs: a log file is read by more people,
and kept longer, than the state store, and personal data must never appear in it unmasked.

The destination is stderr or a file rotated by size: created owner-only (0600), its folder
0700 when made here, written by one process only (a lock beside it refuses a second one). A
child process (the pipeline ``serve`` starts) never opens the file: :func:`forward` makes it
write each record as one JSON line to its stderr, and the parent's :func:`relay` hands them to
its own handler, so one writer rotates one file (decision 0011).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any, TextIO

from exchange_common.errors import InputError
from exchange_common.fs import private_dir
from exchange_common.masking import mask_id_numbers

__all__ = [
    "FORMATS",
    "LEVELS",
    "TEXT_FORMAT",
    "JsonFormatter",
    "LogSettings",
    "TextFormatter",
    "check_format",
    "check_level",
    "forward",
    "install",
    "relay",
]

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
FORMATS = ("text", "json")
#: The text format, unchanged since the node's first release (tools and tests read it).
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Marks the handler :func:`install` put on the root logger, so a second call replaces it.
_OURS = "_exchange_log_handler"
#: Key of a forwarded record's JSON line (anything else on a child's stderr is a raw line).
_FORWARDED = "exchange_log"
#: Characters that end a line for some readers (``str.splitlines``, editors) although JSON
#: leaves them unescaped with ``ensure_ascii=False``: escaped, so one record is one line.
_LINE_BREAKS = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def check_level(value: object) -> str:
    """``value`` as one of :data:`LEVELS` (any case accepted, upper case returned).

    Raises ``ValueError`` naming the choices for anything else.
    """
    if isinstance(value, str) and value.upper() in LEVELS:
        return value.upper()
    raise ValueError(f"must be one of {', '.join(LEVELS)}, not {value!r}")


def check_format(value: object) -> str:
    """``value`` as one of :data:`FORMATS` (any case accepted, lower case returned).

    Raises ``ValueError`` naming the choices for anything else.
    """
    if isinstance(value, str) and value.lower() in FORMATS:
        return value.lower()
    raise ValueError(f"must be one of {', '.join(FORMATS)}, not {value!r}")


@dataclass(frozen=True)
class LogSettings:
    """Where the log goes and how (``[log]`` in node.toml, docs/configuration.md).

    ``file`` empty means stderr; :func:`install` opens a relative path against the working
    folder (the node resolves it against its home first). ``max_bytes`` and ``backups`` bound
    the disk the log takes: ``max_bytes * (backups + 1)``. Raises ``ValueError`` naming the key
    for a bad value; ``level`` and ``format`` are normalised (``debug`` -> ``DEBUG``).
    """

    file: str = ""
    level: str = "INFO"
    format: str = "text"
    max_bytes: int = 50 * 1024 * 1024
    backups: int = 10

    def __post_init__(self) -> None:
        for key, check in (("level", check_level), ("format", check_format)):
            try:
                object.__setattr__(self, key, check(getattr(self, key)))
            except ValueError as e:
                raise ValueError(f"{key} {e}") from None
        for key, low, high in (("max_bytes", 1024, None), ("backups", 1, 999)):
            value = getattr(self, key)
            if (
                not isinstance(value, int)
                or isinstance(value, bool)
                or value < low
                or (high is not None and value > high)
            ):
                bound = f"from {low} to {high}" if high else f"at least {low}"
                raise ValueError(f"{key} must be a whole number {bound}, not {value!r}")
        if not isinstance(self.file, str):
            raise ValueError(f"file must be a path, not {self.file!r}")


def _utc(created: float) -> str:
    # Milliseconds, unlike timefmt.rfc3339's whole seconds: lines of one second need an order.
    when = dt.datetime.fromtimestamp(created, dt.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _exc_text(formatter: logging.Formatter, record: logging.LogRecord) -> str | None:
    """The record's exception and stack text (unmasked), or None without either."""
    parts = []
    if record.exc_info:
        parts.append(formatter.formatException(record.exc_info))
    elif record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(formatter.formatStack(record.stack_info))
    return "\n".join(parts) or None


class TextFormatter(logging.Formatter):
    """:data:`TEXT_FORMAT`, exception text below it, every ID number masked."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        """The finished line(s) with every ID number standing on its own masked."""
        return mask_id_numbers(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (ISO 8601 UTC), ``level``, ``logger``, ``message``,
    ``pid``, and ``exc`` (exception and stack text) when there is one. Each value is masked
    before it is encoded, so an escape cannot hide an ID number from the mask."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON (no line break inside), ID numbers masked."""
        doc: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname,
            "logger": mask_id_numbers(record.name),
            "message": mask_id_numbers(record.getMessage()),
            "pid": record.process,
        }
        exc = _exc_text(self, record)
        if exc is not None:
            doc["exc"] = mask_id_numbers(exc)
        line = json.dumps(doc, ensure_ascii=False)
        for char, escaped in _LINE_BREAKS.items():
            line = line.replace(char, escaped)
        return line


def _report_failure(handler: logging.Handler) -> None:
    """What ``Handler.handleError`` prints, without the record: the stock one writes the
    message and its arguments raw to stderr, an ID number among them (a full disk would print
    every line so)."""
    kind, error, _ = sys.exc_info()
    if not logging.raiseExceptions or sys.stderr is None or kind is None:
        return
    with contextlib.suppress(Exception):
        sys.stderr.write(
            mask_id_numbers(f"--- log line not written by {handler}: {kind.__name__}: {error}\n")
        )


class _StderrHandler(logging.StreamHandler[TextIO]):
    """stderr (or a stand-in), reporting its failures without the record."""

    def handleError(self, record: logging.LogRecord) -> None:
        """Report a failed line without its content (:func:`_report_failure`)."""
        _report_failure(self)


class _PrivateRotatingFileHandler(RotatingFileHandler):
    """A size-rotated file created 0600, held by this process alone (``<file>.lock``)."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self._lock_fd = _lock(path)
        try:
            super().__init__(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        except BaseException:
            os.close(self._lock_fd)
            raise

    def _open(self) -> Any:
        # os.open with 0600: the file never exists, even for an instant, with the umask's mode.
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return os.fdopen(fd, "a", encoding=self.encoding, errors=self.errors)

    def handleError(self, record: logging.LogRecord) -> None:
        """Report a failed line without its content (:func:`_report_failure`)."""
        _report_failure(self)

    def close(self) -> None:
        """Close the file and release the lock (idempotent)."""
        super().close()
        fd, self._lock_fd = self._lock_fd, -1
        if fd >= 0:
            os.close(fd)


def _lock(path: Path) -> int:
    """Hold ``<path>.lock`` for this process, or raise: two processes rotating one file would
    rename it under each other (lines out of order, files over their size)."""
    lock = path.with_name(path.name + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = ""
        with contextlib.suppress(OSError):
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        raise InputError(
            f"log file {path} is written by another process (pid {holder or 'unknown'}): "
            "give each node process its own [log] file or --log-file",
            code="E_CONFIG",
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        os.close(fd)
        raise
    return fd


def _handler(settings: LogSettings, stream: TextIO | None) -> logging.Handler:
    if not settings.file:
        return _StderrHandler(stream if stream is not None else sys.stderr)
    path = Path(settings.file).resolve()
    try:
        private_dir(path.parent)
        return _PrivateRotatingFileHandler(path, settings.max_bytes, settings.backups)
    except OSError as e:
        raise InputError(
            f"log file {path}: cannot write it ({e.strerror or e})", code="E_CONFIG"
        ) from e


def _ours() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if getattr(h, _OURS, False)]


def _drop(handler: logging.Handler) -> None:
    logging.getLogger().removeHandler(handler)
    handler.close()


def _take_root(handler: logging.Handler, level: int) -> None:
    """Make ``handler`` the one handler :func:`install`/:func:`forward` own on the root
    logger; handlers others added (a test's capture) stay."""
    root = logging.getLogger()
    for old in _ours():
        _drop(old)
    setattr(handler, _OURS, True)
    handler.setLevel(level)
    root.addHandler(handler)
    root.setLevel(level)
    # asyncssh logs every packet exchange at INFO; its warnings are what an operator needs.
    logging.getLogger("asyncssh").setLevel(max(logging.WARNING, level))


def install(settings: LogSettings, *, stream: TextIO | None = None) -> logging.Handler:
    """Send this process's log to ``settings``' destination at its level and in its format,
    replacing what an earlier :func:`install` or :func:`forward` set up. ``stream`` stands in
    for stderr. Every line is masked (module doc).

    Returns the handler. Raises :class:`InputError` ``E_CONFIG`` naming the file when it
    cannot be opened or another process writes it; the logging already set up is then kept
    (but for a handler of this very file, which is closed first).
    """
    if settings.file:
        # This process's own lock would refuse the file it already writes: let that one go.
        path = str(Path(settings.file).resolve())
        for old in _ours():
            if isinstance(old, _PrivateRotatingFileHandler) and old.baseFilename == path:
                _drop(old)
    handler = _handler(settings, stream)
    handler.setFormatter(JsonFormatter() if settings.format == "json" else TextFormatter())
    _take_root(handler, logging.getLevelNamesMapping()[settings.level])
    return handler


class _ForwardHandler(_StderrHandler):
    """Child side: each record as one masked JSON line for the parent's :func:`relay`."""

    def format(self, record: logging.LogRecord) -> str:
        exc = _exc_text(_PLAIN, record)
        return json.dumps(
            {
                _FORWARDED: 1,
                "name": record.name,
                "levelno": record.levelno,
                "levelname": record.levelname,
                "msg": mask_id_numbers(record.getMessage()),
                "exc": mask_id_numbers(exc) if exc is not None else None,
                "created": record.created,
                "process": record.process,
            }
        )


_PLAIN = logging.Formatter()


def forward(level: str, *, stream: TextIO | None = None) -> logging.Handler:
    """Child side: send this process's records at ``level`` or above, masked, as JSON lines
    to ``stream`` (default stderr) for the parent's :func:`relay`, replacing what an earlier
    :func:`install` or :func:`forward` set up. Returns the handler; raises ``ValueError`` for
    a level not in :data:`LEVELS`."""
    handler = _ForwardHandler(stream if stream is not None else sys.stderr)
    _take_root(handler, logging.getLevelNamesMapping()[check_level(level)])
    return handler


def _forwarded(line: str) -> logging.LogRecord | None:
    """The record a forwarded line carries, or None for any other line."""
    if not line.startswith("{"):
        return None
    try:
        doc = json.loads(line)
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get(_FORWARDED) != 1:
        return None
    types = {"name": str, "levelno": int, "levelname": str, "msg": str, "process": int}
    if not all(isinstance(doc.get(k), t) for k, t in types.items()):
        return None
    created, exc = doc.get("created"), doc.get("exc")
    if not isinstance(created, int | float) or not (exc is None or isinstance(exc, str)):
        return None
    fields = {k: doc[k] for k in types}
    return logging.makeLogRecord(
        {
            **fields,
            "args": None,
            "exc_text": exc,
            "created": float(created),
            "msecs": int((created - int(created)) * 1000),
        }
    )


def relay(lines: Iterable[bytes | str], source: str) -> None:
    """Parent side: hand each record a child forwarded (:func:`forward`) to this process's
    handlers, which apply their level and mask again. Any other line (a crash's traceback, a
    library writing to stderr) is logged as a WARNING of logger ``source``, masked like every
    line. Returns at the end of ``lines`` (the child's stderr closed)."""
    raw_log = logging.getLogger(source)
    for raw in lines:
        line = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        record = _forwarded(line)
        if record is None:
            raw_log.warning("%s", line)
        else:
            logging.getLogger(record.name).handle(record)
