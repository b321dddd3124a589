"""The node's log (exchange_common.logs): no ID number gets through unmasked, whichever way a
caller logs it; JSON lines are one object each; levels filter; the file is private, rotates and
has one writer; a child's records reach the parent's log."""

from __future__ import annotations

import datetime as dt
import fcntl
import io
import json
import logging
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange_common.errors import InputError
from exchange_common.logs import LogSettings, forward, install, relay
from tests.common.test_idnumber import make_id

#: A valid, made-up GB 11643 number (check character computed): never real personal data.
ID = make_id("330102", dt.date(1990, 1, 1), 123)
MASKED = ID[:6] + "********" + ID[-4:]

log = logging.getLogger("exchange_server.test_logs")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    asyncssh_level = logging.getLogger("asyncssh").level
    hooks = sys.excepthook
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    root.setLevel(level)
    logging.getLogger("asyncssh").setLevel(asyncssh_level)
    sys.excepthook = hooks


def _lines(buf: io.StringIO) -> list[str]:
    return buf.getvalue().splitlines()


def _fail_with_id() -> None:
    try:
        raise ValueError(f"row 7: person {ID} not found")
    except ValueError:
        log.exception("lookup failed for %s", ID)


# -- settings ------------------------------------------------------------------------------


def test_settings_default_to_stderr_text_info_and_accept_any_case() -> None:
    s = LogSettings()
    assert (s.file, s.level, s.format, s.backups) == ("", "INFO", "text", 10)
    assert s.max_bytes == 50 * 1024 * 1024
    assert (LogSettings(level="debug").level, LogSettings(format="JSON").format) == (
        "DEBUG",
        "json",
    )


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"level": "LOUD"}, "level must be one of DEBUG, INFO, WARNING, ERROR"),
        ({"level": "CRITICAL"}, "level must be one of"),
        ({"format": "xml"}, "format must be one of text, json"),
        ({"max_bytes": 100}, "max_bytes must be a whole number at least 1024"),
        ({"max_bytes": True}, "max_bytes"),
        ({"backups": 0}, "backups must be a whole number from 1 to 999"),
        ({"backups": 1000}, "backups"),
    ],
)
def test_bad_settings_name_their_key(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ValueError) as e:
        LogSettings(**kwargs)  # type: ignore[arg-type]
    assert needle in str(e.value)


# -- masking ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_an_id_number_in_arguments_or_exception_text_comes_out_masked(fmt: str) -> None:
    buf = io.StringIO()
    install(LogSettings(format=fmt), stream=buf)
    log.info("person %s checked", ID)
    log.warning(f"person {ID} in an f-string")  # a careless caller, on purpose
    _fail_with_id()
    log.error("with a stack", stack_info=True, extra={"id": ID})
    out = buf.getvalue()
    assert ID not in out
    # the two messages, the exception's message and its text (the source line shows "{ID}")
    assert out.count(MASKED) == 4
    assert "Traceback" in out and "ValueError: row 7: person " + MASKED in out


def test_an_id_number_hidden_behind_a_json_escape_is_still_masked() -> None:
    # Masking after encoding would see "\n330102…" as the letter n glued to the number.
    buf = io.StringIO()
    install(LogSettings(format="json"), stream=buf)
    log.info("two lines:\n%s", ID)
    [line] = _lines(buf)
    assert ID not in json.loads(line)["message"]


def test_a_line_that_cannot_be_written_is_reported_without_its_content(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The stock handleError prints the message and its arguments raw to stderr.
    root = logging.getLogger()
    others = list(root.handlers)  # pytest's capture raises where a node's handler reports
    for h in others:
        root.removeHandler(h)
    try:
        install(LogSettings(), stream=io.StringIO())
        log.info("person %d", ID)  # a str for %d: formatting fails
    finally:
        for h in others:
            root.addHandler(h)
    err = capsys.readouterr().err
    assert "log line not written" in err and "TypeError" in err
    assert ID not in err and "person" not in err


# -- formats ---------------------------------------------------------------------------------


def test_json_lines_are_one_object_each_with_the_promised_fields() -> None:
    buf = io.StringIO()
    install(LogSettings(format="json"), stream=buf)
    log.info("节点 %s\nsecond line\u2028third", "MZ330100")
    _fail_with_id()
    first, second = (json.loads(line) for line in _lines(buf))
    assert set(first) == {"time", "level", "logger", "message", "pid"}
    assert (first["level"], first["logger"]) == ("INFO", log.name)
    assert first["message"] == "节点 MZ330100\nsecond line\u2028third"
    assert first["pid"] == os.getpid()
    when = dt.datetime.fromisoformat(first["time"])
    assert first["time"].endswith("Z") and when.utcoffset() == dt.timedelta(0)
    assert abs(dt.datetime.now(dt.UTC) - when) < dt.timedelta(minutes=5)
    assert second["level"] == "ERROR" and "Traceback" in second["exc"]


def test_the_text_format_is_the_one_the_node_always_wrote() -> None:
    buf = io.StringIO()
    install(LogSettings(), stream=buf)
    log.info("node %s serving", "NODE01")
    [line] = _lines(buf)
    assert line.endswith(f" INFO {log.name}: node NODE01 serving")


# -- levels ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "shown"),
    [
        ("DEBUG", ["debug", "info", "warning", "error"]),
        ("INFO", ["info", "warning", "error"]),
        ("WARNING", ["warning", "error"]),
        ("ERROR", ["error"]),
    ],
)
def test_lines_below_the_level_are_left_out(level: str, shown: list[str]) -> None:
    buf = io.StringIO()
    install(LogSettings(level=level, format="json"), stream=buf)
    for name in ("debug", "info", "warning", "error"):
        getattr(log, name)("a %s line", name)
    assert [json.loads(line)["message"] for line in _lines(buf)] == [f"a {n} line" for n in shown]


def test_asyncssh_stays_at_warning_even_at_debug() -> None:
    install(LogSettings(level="DEBUG"), stream=io.StringIO())
    assert logging.getLogger("asyncssh").getEffectiveLevel() == logging.WARNING


# -- the file --------------------------------------------------------------------------------


def test_the_file_is_owner_only_in_a_folder_made_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "var" / "log" / "node.log"
    install(LogSettings(file=str(path)))
    log.info("hello")
    logging.getLogger().handlers[-1].flush()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "var").stat().st_mode) == 0o700
    assert path.read_text("utf-8").rstrip().endswith("hello")


def test_a_small_max_bytes_rotates_into_backups_of_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "node.log"
    install(LogSettings(file=str(path), format="json", max_bytes=1024, backups=3))
    for i in range(60):
        log.info("line %d for person %s", i, ID)
    files = sorted(tmp_path.glob("node.log*"))
    names = {p.name for p in files}
    assert {"node.log", "node.log.1", "node.log.2", "node.log.3"} <= names
    assert "node.log.4" not in names  # backups bounds the disk the log takes
    for p in (tmp_path / n for n in ("node.log", "node.log.1", "node.log.2", "node.log.3")):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
        assert p.stat().st_size <= 1024
        text = p.read_text("utf-8")
        assert ID not in text
        for line in text.splitlines():
            assert json.loads(line)["level"] == "INFO"
    last = json.loads(path.read_text("utf-8").splitlines()[-1])
    assert last["message"] == f"line 59 for person {MASKED}"


def test_a_file_another_process_writes_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "node.log"
    # Another open file description holding the lock, as another process would.
    fd = os.open(tmp_path / "node.log.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, b"4242\n")
        with pytest.raises(InputError) as e:
            install(LogSettings(file=str(path)))
        assert e.value.code == "E_CONFIG"
        assert str(path) in e.value.message and "pid 4242" in e.value.message
    finally:
        os.close(fd)
    install(LogSettings(file=str(path)))  # free again
    install(LogSettings(file=str(path), format="json"))  # and this process may reopen it


def test_a_file_that_cannot_be_written_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "node.log").mkdir()
    with pytest.raises(InputError) as e:
        install(LogSettings(file=str(tmp_path / "node.log")))
    assert e.value.code == "E_CONFIG" and "node.log" in e.value.message


# -- a child's records -----------------------------------------------------------------------


def test_a_childs_records_reach_the_parents_log_masked_with_their_origin() -> None:
    pipe = io.StringIO()
    forward("INFO", stream=pipe)
    log.debug("not sent: below the level")
    log.info("upload of person %s done", ID)
    _fail_with_id()
    sent = pipe.getvalue()
    assert ID not in sent  # masked before it leaves the child
    out = io.StringIO()
    install(LogSettings(format="json"), stream=out)
    raw = f"Traceback (most recent call last): person {ID}\n"
    relay([line.encode() for line in sent.splitlines(keepends=True)] + [raw.encode()], "pipe")
    done, failed, stray = (json.loads(line) for line in _lines(out))
    assert (done["logger"], done["message"]) == (log.name, f"upload of person {MASKED} done")
    assert done["pid"] == os.getpid()  # the child's pid, carried over
    assert failed["level"] == "ERROR" and "ValueError: row 7" in failed["exc"]
    assert (stray["logger"], stray["level"]) == ("pipe", "WARNING")
    assert ID not in out.getvalue() and MASKED in stray["message"]


def test_the_parents_level_applies_to_relayed_records() -> None:
    pipe = io.StringIO()
    forward("DEBUG", stream=pipe)
    log.debug("a debug line")
    log.warning("a warning line")
    out = io.StringIO()
    install(LogSettings(level="WARNING"), stream=out)
    relay(pipe.getvalue().splitlines(), "pipe")
    assert "a warning line" in out.getvalue() and "a debug line" not in out.getvalue()


# -- what nothing caught ---------------------------------------------------------------------


def test_an_uncaught_exception_is_logged_masked_not_printed_raw(tmp_path: Path) -> None:
    script = (
        "from exchange_common.cli import setup_logging\n"
        "from exchange_common.logs import LogSettings\n"
        f"setup_logging(LogSettings(file={str(tmp_path / 'n.log')!r}))\n"
        f"raise RuntimeError('person {ID}')\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert r.returncode == 1
    assert ID not in r.stderr and "uncaught RuntimeError" in r.stderr and "n.log" in r.stderr
    text = (tmp_path / "n.log").read_text("utf-8")
    assert "CRITICAL exchange.uncaught: uncaught exception" in text
    assert f"RuntimeError: person {MASKED}" in text and ID not in text
