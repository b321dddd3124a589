"""What the three CLIs share: error reporting, exit codes, JSON output, passphrase prompts,
the log's set-up.

Only CLIs import this module: it reads the environment and talks to the terminal, which the
library code never does.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import getpass
import json
import logging
import os
import sys
import threading
import types
from collections.abc import Callable, Iterator
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from exchange_common.codes import lookup
from exchange_common.errors import ExchangeError, InputError
from exchange_common.logs import LogSettings, forward, install

__all__ = [
    "DISTRIBUTION",
    "EXIT_CODES_HELP",
    "EXIT_INTERRUPTED",
    "PROGRESS_MIN_BYTES",
    "VersionOpt",
    "byte_progress",
    "console",
    "emit_json",
    "err_console",
    "error_json",
    "fail_on_error",
    "parse_time",
    "prompt_passphrase",
    "setup_logging",
    "version_text",
]

P = ParamSpec("P")
R = TypeVar("R")

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

EXIT_CODES_HELP = (
    "Exit codes: 0 success; 1 verification failed (bad certificate or bundle) or a fault in "
    "the node; 2 usage error; 3 bad input; 4 CA state forbids it; 5 network; 6 state store; "
    "130 interrupted (Ctrl-C). "
    "Reason codes: docs/reason-codes.md."
)


#: The installed distribution the three CLIs come from (pyproject.toml ``[project] name``).
DISTRIBUTION = "social-assistance-exchange"


def version_text() -> str:
    """The installed version of :data:`DISTRIBUTION`, or ``unknown`` when it is not installed
    (run from a source tree): never raises."""
    try:
        return dist_version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown"


def _print_version(ctx: typer.Context, value: bool) -> None:
    if value:
        typer.echo(f"{ctx.find_root().info_name} {version_text()}")
        raise typer.Exit()


#: ``--version`` for a CLI's top-level callback: prints ``<program> <version>`` and exits 0
#: before any command runs (``def _root(version: VersionOpt = False) -> None``).
VersionOpt = Annotated[
    bool,
    typer.Option(
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print the program's version and exit.",
    ),
]


#: The exit code of a command stopped by Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130


def fail_on_error(func: Callable[P, R]) -> Callable[P, R]:
    """Turn an :class:`ExchangeError` into an ``error:`` line and its exit code.

    Prints ``error: <message> (<code>)``, then ``  cause: <detail>`` when known, then
    ``hint: <operator hint>`` when the code is in the registry (:mod:`exchange_common.codes`).
    Ctrl-C (:class:`KeyboardInterrupt`) prints ``interrupted`` and exits
    :data:`EXIT_INTERRUPTED`, without a traceback.
    Anything else propagates with its traceback: that is a bug, not a user error.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ExchangeError as e:
            err_console.print(f"error: {e}", markup=False)
            if e.detail:
                err_console.print(f"  cause: {e.detail}", markup=False)
            entry = e.registry_entry
            if entry is not None:
                err_console.print(f"hint: {entry.operator_hint}", markup=False)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("interrupted", markup=False)
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper


def error_json(error: ExchangeError) -> dict[str, str | None]:
    """The fields a ``--json`` output carries for ``error``: code, message, registry texts.

    ``text`` is the registry's peer-safe sentence (a generic one for an unregistered code);
    ``hint`` is the operator hint, ``None`` for an unregistered code.
    """
    entry = lookup(error.code)
    return {
        "code": error.code,
        "reason": error.message,
        "text": error.peer_text,
        "hint": entry.operator_hint if entry is not None else None,
    }


#: Below this many bytes an operation is quick enough to need no progress bar.
PROGRESS_MIN_BYTES = 8 * 1024 * 1024


@contextlib.contextmanager
def byte_progress(total: int, label: str) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr advanced by byte counts (sealing, uploads, opening).

    Yields ``None`` when stderr is not a terminal or ``total`` is small, so scripts and logs
    never see bar output; the bar disappears when done.
    """
    if total < PROGRESS_MIN_BYTES or not err_console.is_terminal:
        yield None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def parse_time(text: str | None) -> dt.datetime:
    """The ``--at`` option: an ISO 8601 time (naive means UTC), or now when not given."""
    if text is None:
        return dt.datetime.now(dt.UTC)
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError as e:
        raise InputError(
            f"invalid time {text!r}: use ISO 8601, e.g. 2026-11-22T08:00:00+08:00"
        ) from e
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def emit_json(data: Any) -> None:
    """Print ``data`` as JSON on stdout (UTF-8, Chinese kept readable)."""
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


def prompt_passphrase(env: str, *, confirm: bool = False, what: str = "CA key") -> bytes | None:
    """Passphrase from ``env``, else from the terminal; None when neither is available.

    With ``confirm`` (creating a key) the terminal prompt asks twice and refuses a mismatch or
    an empty answer.
    """
    value = os.environ.get(env)
    if value:
        return value.encode()
    if not sys.stdin.isatty():
        return None
    first = getpass.getpass(f"Passphrase for the {what}: ")
    if confirm:
        if not first:
            raise InputError("empty passphrase refused (use --no-passphrase for test CAs)")
        if getpass.getpass("Repeat the passphrase: ") != first:
            raise InputError("the passphrases do not match", code="E_PASSPHRASE")
    return first.encode() if first else None


def setup_logging(settings: LogSettings | None = None, *, to_parent: bool = False) -> None:
    """Send this process's log where ``settings`` say (default: stderr, text, INFO); with
    ``to_parent`` (the pipeline child of ``serve``) to the parent process instead, at
    ``settings.level``, over stderr (:func:`exchange_common.logs.forward`).

    Every line is masked (:mod:`exchange_common.logs`), and so is the traceback of an exception
    nothing caught, in the main thread or another: it is logged (CRITICAL) instead of printed
    raw to stderr. Raises :class:`InputError` ``E_CONFIG`` naming the log file when it cannot be
    opened or another process writes it.
    """
    global _log_file
    settings = settings if settings is not None else LogSettings()
    if to_parent:
        forward(settings.level)
        _log_file = ""
    else:
        install(settings)
        _log_file = settings.file
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


#: The file :func:`setup_logging` sends the log to ("" = stderr or the parent process).
_log_file = ""
_uncaught = logging.getLogger("exchange.uncaught")


def _log_uncaught(
    kind: type[BaseException], error: BaseException, tb: types.TracebackType | None
) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, error, tb)
        return
    _uncaught.critical("uncaught exception", exc_info=(kind, error, tb))
    if _log_file:  # the terminal would show nothing: say where the traceback went
        err_console.print(f"error: uncaught {kind.__name__}; see {_log_file}", markup=False)


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return  # as threading's own hook: a thread's exit is no error
    name = args.thread.name if args.thread is not None else "?"
    if args.exc_value is None:
        _uncaught.critical("uncaught %s in thread %s", args.exc_type.__name__, name)
        return
    _uncaught.critical(
        "uncaught exception in thread %s",
        name,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )
