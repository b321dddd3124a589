"""``exchange-server watch`` as an administrator runs it: the console script in a real
pseudo-terminal, on a node home with uploads. The view follows the spool (an upload processed
while it runs shows up with the slow timer an hour away), and ``q``, Ctrl-C and SIGTERM all leave
with exit 0 and the terminal as it was. Without a terminal it refuses and says what to use.
And the refresh schedule, with times passed in: debounced events, settling refreshes, the timer."""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rich.console import Console
from rich.live import Live
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from exchange_server.admin import watch_cli
from exchange_server.admin.cli import app
from exchange_server.admin.watch_cli import MIN_GAP, SETTLE, RefreshSchedule
from tests.server.pipeline.test_workflow import _push_data
from tests.server.world import World

#: Runs the console script with the pseudo-terminal as its controlling terminal (a new session
#: from Popen, then TIOCSCTTY), so that Ctrl-C typed into it is a SIGINT as in a real terminal.
_WITH_CTTY = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)
_ANSI = re.compile(
    r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[()=>78][0-9A-B]?"
)
#: What rich writes when the view ends: cursor shown, main screen back.
SHOW_CURSOR, MAIN_SCREEN = "\x1b[?25h", "\x1b[?1049l"


def _script() -> str:
    beside = Path(sys.executable).with_name("exchange-server")
    found = str(beside) if beside.exists() else shutil.which("exchange-server")
    assert found, "the exchange-server console script is not installed (pip install -e .)"
    return found


class Terminal:
    """A command running in a pseudo-terminal of 50 rows and 160 columns; the test is the
    keyboard and the screen."""

    def __init__(self, *args: str) -> None:
        self.master, self.slave = os.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
        self.cooked = termios.tcgetattr(self.slave)
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
        env["TERM"] = "xterm-256color"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WITH_CTTY, _script(), *args],
            stdin=self.slave,
            stdout=self.slave,
            stderr=self.slave,
            env=env,
            start_new_session=True,
        )
        self.raw = b""

    @property
    def output(self) -> str:
        return self.raw.decode("utf-8", "replace")

    @property
    def text(self) -> str:
        """What was written, without the terminal's control sequences."""
        return _ANSI.sub("", self.output)

    def _read(self, timeout: float) -> None:
        ready, _, _ = select.select([self.master], [], [], max(0.0, timeout))
        if ready:
            with contextlib.suppress(OSError):  # EIO: nobody holds the other end any more
                self.raw += os.read(self.master, 1 << 16)

    def wait_for(self, seen: Callable[[str], bool], what: str, timeout: float = 30) -> None:
        """Read until ``seen(text)``; fail naming ``what`` and showing the screen after
        ``timeout`` seconds or when the command ended first."""
        deadline = time.monotonic() + timeout
        while not seen(self.text):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self._read(0.2)
                if seen(self.text):
                    return
                raise AssertionError(f"no {what} within {timeout} s; screen:\n{self.text[-3000:]}")
            self._read(left)

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def exit_code(self, timeout: float = 20) -> int:
        """Wait for the command to end, reading what it writes meanwhile; its exit code."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            assert time.monotonic() < deadline, f"still running after {timeout} s"
            self._read(0.1)
        self._read(0.2)
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def world(catalog_world: World) -> World:
    _push_data(catalog_world)  # one data push, done
    return catalog_world


@pytest.fixture
def term(world: World) -> Iterator[Terminal]:
    t = Terminal("watch", "--home", str(world.node.config.home), "--interval", "3600")
    try:
        t.wait_for(lambda s: "by state: done 1" in s and "to quit" in s, "first whole view")
        yield t
    finally:
        t.close()


def assert_restored(t: Terminal) -> None:
    """The view ended as a terminal program should: cursor shown, main screen back, the
    terminal's modes as before (echo and line mode), no traceback."""
    assert SHOW_CURSOR in t.output and MAIN_SCREEN in t.output
    assert t.output.rindex(SHOW_CURSOR) > t.output.rindex("to quit")  # after the last view
    lflag = termios.tcgetattr(t.slave)[3]
    assert lflag & termios.ICANON and lflag & termios.ECHO
    assert termios.tcgetattr(t.slave) == t.cooked
    assert "Traceback" not in t.text


def test_the_view_follows_the_spool_and_q_quits_cleanly(world: World, term: Terminal) -> None:
    assert "node NODE01" in term.text and "q or Ctrl-C to quit" in term.text
    # another push, processed while the view runs: only the spool's events can explain a new
    # view, the slow timer being an hour away
    _push_data(world)
    term.wait_for(lambda s: "by state: done 2" in s, "view updated by the spool event")
    term.type(b"q")
    assert term.exit_code() == 0
    assert_restored(term)


@pytest.mark.parametrize("how", ["Ctrl-C typed", "SIGTERM"])
def test_ctrl_c_and_sigterm_quit_cleanly(term: Terminal, how: str) -> None:
    if how == "SIGTERM":
        term.proc.send_signal(signal.SIGTERM)
    else:
        term.type(b"\x03")  # the terminal turns it into SIGINT (the view is its foreground)
    assert term.exit_code() == 0
    assert_restored(term)
    assert "Aborted" not in term.text


def test_without_a_terminal_it_refuses_and_points_to_status_json(world: World) -> None:
    home = str(world.node.config.home)
    r = CliRunner().invoke(app, ["watch", "--home", home])
    assert r.exit_code == 3
    assert "needs a terminal" in r.output and "status --json" in r.output
    piped = subprocess.run(
        [_script(), "watch", "--home", home],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert piped.returncode == 3 and piped.stdout == ""
    assert "E_USAGE" in piped.stderr and "status --json" in piped.stderr


def test_help_has_examples_and_a_too_short_interval_is_refused(world: World) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["watch", "--help"])
    assert r.exit_code == 0 and "Examples" in r.output
    assert "exchange-server watch --home /srv/node" in r.output
    home = str(world.node.config.home)
    bad = runner.invoke(app, ["watch", "--home", home, "--interval", "0.1"])
    assert bad.exit_code == 2  # a usage error, before anything else


def test_events_refresh_at_most_four_times_a_second_then_settle_then_wait_the_interval() -> None:
    s = RefreshSchedule(5.0, now=100.0)
    assert s.next_at() == 105.0  # nothing happens: the slow timer
    s.event(100.1)
    assert s.next_at() == 100.25  # at once, but not closer than MIN_GAP to the last refresh
    s.refreshed(100.25)
    # a burst of events while refreshing is answered MIN_GAP later, not at every event
    for t in (100.3, 100.31, 100.32):
        s.event(t)
    assert s.next_at() == 100.25 + MIN_GAP
    s.refreshed(100.5)
    # then settling refreshes after the burst's last event (100.32 + SETTLE, none closer than
    # MIN_GAP to the one before), then the slow timer again
    assert SETTLE == (0.25, 1.0, 3.0)
    for due in (100.75, 101.32, 103.32):
        assert s.next_at() == pytest.approx(due)
        s.refreshed(due)
    assert s.next_at() == pytest.approx(108.32)


def test_an_interval_below_the_minimum_gap_is_refused() -> None:
    with pytest.raises(ValueError):
        RefreshSchedule(0.1, now=0.0)


def test_a_store_that_cannot_be_read_keeps_the_last_view_and_says_so(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = io.StringIO()
    console = Console(file=out, width=160, height=50, color_system=None, force_terminal=True)
    view = watch_cli._View(world.node, Live(console=console, auto_refresh=False), 5, [])
    view.refresh()
    good = view.doc

    def down(*args: object) -> None:
        raise OperationalError("SELECT … WHERE x = %(p)s", {"p": "a parameter"}, Exception("gone"))

    monkeypatch.setattr(watch_cli, "node_status", down)
    view.refresh()
    assert view.doc is good  # the last view stays
    console.print(view.live.renderable)
    text = out.getvalue()
    assert "the store cannot be read (OperationalError)" in text and "by state: done 1" in text
    assert "a parameter" not in text and "SELECT" not in text
