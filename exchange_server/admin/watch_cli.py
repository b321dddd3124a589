"""``exchange-server watch``: the status view, live in the terminal.

The same document as ``exchange-server status --json``
(:func:`~exchange_server.store.status.node_status`: one store session, GROUP BY queries),
drawn full-screen with rich (the panels: :mod:`~exchange_server.admin.watch_view`) and refreshed
when something happens, never by re-reading the disk in a loop:

- a watchdog observer on the spool folders an upload passes through (``incoming``, ``store``,
  ``quarantine`` and the departments' outboxes) asks for a refresh whenever a file appears,
  moves or goes. Refreshes are at most :data:`MIN_GAP` apart (4 a second), and a burst of events
  is followed by settling refreshes (:data:`SETTLE` after its last event), because the pipeline
  records a state in the store just *after* it moves or writes the file;
- a slow timer (``--interval``, default 5 s) for what only the store sees: a transition without
  a file, a deadline passing, the CRL ageing.

``q`` or Ctrl-C (or SIGTERM) quits with exit 0 and the terminal as it was: main screen back,
cursor shown, cooked mode. Without a terminal the command refuses (``E_USAGE``, exit 3) and
points to ``status --json``: a live view is no use to a script or a log file.

Like ``status`` it shows codes, states, counts and dates only, never an ID number or a name: it
draws nothing but :func:`node_status`'s document, which holds nothing else.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import select
import signal
import sys
import termios
import time
import tty
from collections.abc import Callable, Iterator, Mapping
from types import FrameType
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from sqlalchemy.exc import SQLAlchemyError
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from exchange_common.cli import fail_on_error
from exchange_common.errors import ExchangeError, InputError
from exchange_server.admin.cli_shared import HomeOpt, _node
from exchange_server.admin.watch_view import render_status
from exchange_server.node import Node, utcnow
from exchange_server.spool import Spool
from exchange_server.store.status import attention_reasons, node_status

__all__ = ["DEFAULT_INTERVAL", "MIN_GAP", "SETTLE", "RefreshSchedule", "run_watch", "watch"]

#: Seconds between refreshes when no spool event comes (``--interval``).
DEFAULT_INTERVAL = 5.0
#: Refreshes are never closer than this (seconds): at most 4 a second, whatever the spool does.
MIN_GAP = 0.25
#: Settling refreshes, seconds after the last event of a burst: the store records a state just
#: after the file moved, so the refresh the event itself caused may come too early.
SETTLE = (0.25, 1.0, 3.0)

#: ``q``, ``Q`` and Ctrl-C read as a byte (when the terminal does not turn it into SIGINT).
_QUIT_KEYS = frozenset(b"qQ\x03")
#: File events that mean an upload arrived, moved on or was answered; not "modified" (every
#: write of a long upload) nor "opened"/"closed_no_write" (a department downloading).
_FILE_EVENTS = frozenset({"created", "moved", "deleted", "closed"})


class RefreshSchedule:
    """When the view is refreshed next, from spool events and the slow timer.

    Pure: times are ``time.monotonic()`` seconds passed in. Guarantees: two refreshes are never
    less than :data:`MIN_GAP` apart; an event is followed by a refresh at once (or as soon as
    :data:`MIN_GAP` allows) and by settling refreshes :data:`SETTLE` after the last event of its
    burst; with no event, one refresh every ``interval`` seconds after the last. Raises
    ``ValueError`` for an interval below :data:`MIN_GAP`.
    """

    def __init__(self, interval: float, now: float) -> None:
        if interval < MIN_GAP:
            raise ValueError(f"interval {interval} s is below {MIN_GAP} s")
        self.interval = interval
        self._last = now
        self._dirty_since: float | None = None
        self._last_event: float | None = None

    def event(self, now: float) -> None:
        """A spool event was seen at ``now``."""
        self._last_event = now
        if self._dirty_since is None:
            self._dirty_since = now

    def refreshed(self, now: float) -> None:
        """A refresh ended at ``now``: events seen before it are answered."""
        self._last = now
        self._dirty_since = None

    def next_at(self) -> float:
        """The monotonic time of the next refresh."""
        due = self._last + self.interval
        if self._dirty_since is not None:
            due = min(due, self._dirty_since)
        if self._last_event is not None:
            settling = [self._last_event + s for s in SETTLE if self._last_event + s > self._last]
            if settling:
                due = min(due, settling[0])
        return max(due, self._last + MIN_GAP)


class _Quit(BaseException):
    """SIGTERM: leave like ``q`` (a BaseException, so that no ``except Exception`` on the way
    swallows it)."""


class _SpoolEvents(FileSystemEventHandler):
    """Calls ``poke`` for every file event that can mean an upload moved on."""

    def __init__(self, poke: Callable[[], None]) -> None:
        super().__init__()
        self._poke = poke

    def on_any_event(self, event: FileSystemEvent) -> None:
        """watchdog callback (observer thread): ask the view for a refresh."""
        if event.event_type in _FILE_EVENTS:
            self._poke()


def _watch_spool(spool: Spool, poke: Callable[[], None]) -> tuple[BaseObserver, list[str]]:
    """A started observer on the folders uploads pass through, and a note for each folder it
    cannot watch (then the timer alone refreshes what happens there). Creates no folder."""
    observer = Observer()
    observer.daemon = True
    observer.start()  # started first: a folder that cannot be watched then fails on its own
    handler = _SpoolEvents(poke)
    # incoming/ (not .partial/ below it: every write of an upload in progress), store/,
    # quarantine/, and depts/<CODE>/outbox/ (Spool.outbox) for receipts, results and relays
    folders = [
        (spool.root / "incoming", False),
        (spool.root / "store", False),
        (spool.root / "quarantine", False),
        (spool.root / "depts", True),
    ]
    notes = []
    for folder, recursive in folders:
        if not folder.is_dir():
            continue  # not made yet (no upload, no department): nothing to see there
        try:
            observer.schedule(handler, str(folder), recursive=recursive)
        except OSError as e:
            why = e.strerror or type(e).__name__
            notes.append(f"not watching {folder.name}/ ({why}): refreshed every interval only")
    return observer, notes


def _poker(fd: int, byte: bytes) -> Callable[[], None]:
    def poke() -> None:
        with contextlib.suppress(BlockingIOError):  # a full pipe wakes the loop anyway
            os.write(fd, byte)

    return poke


@contextlib.contextmanager
def _cbreak(fd: int) -> Iterator[None]:
    """The terminal ``fd`` in cbreak mode for the block (keys one at a time, no echo; Ctrl-C
    still a signal), its previous attributes back afterwards whatever happens."""
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@contextlib.contextmanager
def _signals(on_resize: Callable[[], None]) -> Iterator[None]:
    """SIGTERM quits like ``q``; SIGWINCH redraws; the previous handlers back afterwards."""

    def term(signum: int, frame: FrameType | None) -> None:
        raise _Quit

    def winch(signum: int, frame: FrameType | None) -> None:
        on_resize()

    old = {signal.SIGTERM: signal.signal(signal.SIGTERM, term)}
    old[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, winch)
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


class _View:
    """The live screen: the last status document read, and the notes to show with it."""

    def __init__(self, node: Node, live: Live, interval: float, notes: list[str]) -> None:
        self.node, self.live, self.interval, self.notes = node, live, interval, notes
        self.doc: Mapping[str, Any] = {}
        self.refreshed: dt.datetime | None = None
        self.problem: str | None = None

    def refresh(self) -> None:
        """Read the status from the store; on a store failure keep the last one and say so."""
        try:
            now = utcnow()
            doc = node_status(self.node, now)
            self.doc = doc | {"attention_reasons": attention_reasons(doc, now)}
            self.refreshed, self.problem = utcnow(), None
        except ExchangeError as e:
            self.problem = f"the status cannot be read: {e}; showing the last view"
        except SQLAlchemyError as e:
            # the class only: a driver's message may quote a statement and its parameters
            self.problem = f"the store cannot be read ({type(e).__name__}); showing the last view"
        self.draw()

    def draw(self) -> None:
        """Draw the last document again (after a refresh or a resize), fitted to the screen."""
        width, height = self.live.console.size
        notes = [*self.notes, *([self.problem] if self.problem else [])]
        view = render_status(
            self.doc,
            refreshed=self.refreshed,
            interval=self.interval,
            notes=notes,
            rows=max(3, (height - 22) // 2),
            wide=width >= 120,
        )
        self.live.update(view, refresh=True)


def _loop(view: _View, schedule: RefreshSchedule, keys: int, wake: int) -> None:
    """Wait for a key, a spool event, a resize or the next refresh; return on ``q``, Ctrl-C
    read as a byte, or the end of the terminal's input."""
    while True:
        timeout = max(0.0, schedule.next_at() - time.monotonic())
        ready, _, _ = select.select([keys, wake], [], [], timeout)
        if keys in ready:
            try:
                pressed = os.read(keys, 64)
            except OSError:  # the terminal went away
                return
            if not pressed or _QUIT_KEYS.intersection(pressed):
                return
        if wake in ready:
            woken = os.read(wake, 4096)
            if b"e" in woken:
                schedule.event(time.monotonic())
            if b"w" in woken:
                view.draw()
        if time.monotonic() >= schedule.next_at():
            view.refresh()
            schedule.refreshed(time.monotonic())


def run_watch(node: Node, *, interval: float, console: Console, keys: int) -> None:
    """Show the live status of ``node`` on ``console`` (a terminal) until ``q``, Ctrl-C or
    SIGTERM, reading keys from the terminal ``keys``. Returns normally in all three cases with
    the terminal restored (main screen, cursor shown, previous terminal attributes), and the
    observer and pipe closed. Raises ``ValueError`` for an interval below :data:`MIN_GAP`; a
    bug's exception propagates, the terminal restored first. Must run in the main thread
    (signal handlers)."""
    schedule = RefreshSchedule(interval, time.monotonic())
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    observer: BaseObserver | None = None
    try:
        observer, notes = _watch_spool(
            Spool(node.config.path(node.config.spool)), _poker(wake_w, b"e")
        )
        live = Live(
            console=console,
            screen=True,
            auto_refresh=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        with _cbreak(keys), _signals(_poker(wake_w, b"w")), live:
            view = _View(node, live, interval, notes)
            view.refresh()
            schedule.refreshed(time.monotonic())
            _loop(view, schedule, keys, wake_r)
    except (KeyboardInterrupt, _Quit):
        pass  # asked to quit: the context managers above have restored the terminal
    finally:
        if observer is not None:
            observer.stop()
            observer.join(timeout=5)
        if observer is None or not observer.is_alive():  # else it may still poke: leave the fds
            os.close(wake_r)
            os.close(wake_w)


@fail_on_error
def watch(
    home: HomeOpt,
    interval: Annotated[
        float,
        typer.Option(
            "--interval",
            min=1.0,
            help="Seconds between refreshes when no spool event comes (state changes only the "
            "store sees, deadlines, the CRL).",
        ),
    ] = DEFAULT_INTERVAL,
) -> None:
    """The same as `status`, live in the terminal: queues by state and department, the oldest
    upload on its way, held uploads, rejections of the last day, deadlines, the CRL and the node
    certificate. Refreshed when an upload arrives or moves in the spool, and every `--interval`
    seconds for what only the store sees. `q` or Ctrl-C quits (exit 0).

    Needs a terminal: without one it refuses (exit 3); scripts and monitoring use
    `status --json`.

    **Examples**

        exchange-server watch --home /srv/node

        exchange-server watch --home /srv/node --interval 30
    """
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise InputError(
            "watch needs a terminal (stdin and stdout): for scripts and monitoring use "
            "`exchange-server status --json`",
            code="E_USAGE",
        )
    node = _node(home)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C before the view was up: nothing to undo
        run_watch(
            node, interval=interval, console=Console(highlight=False), keys=sys.stdin.fileno()
        )
