"""The ingest pipeline in its own process, started and supervised by ``exchange-server serve``.

Why a process: the SFTP front (SSH crypto, packet handling) and the pipeline (verifying
bundles, sealing receipts) are both CPU-bound Python; in one process they share one core
through the GIL. As two processes they use two. They already meet only through the store and
the spool, so nothing else changes: every upload is durable before it is acknowledged, and the
pipeline resumes any upload from its recorded state.

The parent wakes the child by writing a byte to the child's stdin after each committed upload
(the child also polls the store every second). The child dies with its parent: Linux delivers
SIGKILL to it when the parent dies (``PR_SET_PDEATHSIG``), and it also exits when its stdin
reaches end of file or its parent process id changes.

The child never opens the node's log file: it writes its records, masked, as JSON lines to its
stderr, and a thread of the parent hands them to the parent's log (``exchange_common.logs``;
decision 0011). One process writes and rotates the file, and whatever else the child prints (a
crash's traceback) reaches the same log, masked too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from exchange_common.cli import setup_logging
from exchange_common.errors import ExchangeError
from exchange_common.logs import LogSettings, check_level, relay
from exchange_server.crl import CrlWatch
from exchange_server.data.compare import load_rules, rules_path, run_due
from exchange_server.node import Node, utcnow
from exchange_server.pipeline.assembly import node_runner
from exchange_server.pipeline.workflow import Workflow

__all__ = ["PipelineProcess", "main", "run_child"]

log = logging.getLogger("exchange_server.pipeline")

#: Seconds between checks for due cross-comparison rules.
COMPARE_INTERVAL = 60.0
#: Seconds between two checks of the CRL's freshness (exchange_server.crl).
CRL_INTERVAL = 60.0
#: Seconds the parent waits, once the child has exited, for its last log lines.
RELAY_DRAIN = 5.0

_PR_SET_PDEATHSIG = 1


class PipelineProcess:
    """Parent side: start, wake, supervise and stop the pipeline child."""

    def __init__(self, home: Path, *, log_level: str = "INFO"):
        self.home = Path(home)
        self.log_level = check_level(log_level)
        self.proc: subprocess.Popen[bytes] | None = None
        self.relay: threading.Thread | None = None
        self.restarts = 0

    def start(self) -> None:
        """Start the child (call from the thread that lives as long as the server)."""
        cmd = [
            sys.executable,
            "-m",
            "exchange_server.pipeline.process",
            "--home",
            str(self.home),
            "--parent",
            str(os.getpid()),
            "--log-to-parent",
            "--log-level",
            self.log_level,
        ]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        assert self.proc.stdin is not None and self.proc.stderr is not None
        os.set_blocking(self.proc.stdin.fileno(), False)
        # One thread per child: it ends at the child's end of output, after its last line.
        self.relay = threading.Thread(
            target=relay,
            args=(self.proc.stderr, log.name),
            name=f"pipeline-log-{self.proc.pid}",
            daemon=True,
        )
        self.relay.start()
        log.info("ingest pipeline started (pid %d)", self.proc.pid)

    def wake(self) -> None:
        """Tell the child there is work; never blocks, callable from any thread."""
        proc = self.proc
        if proc is None or proc.stdin is None:
            return
        with contextlib.suppress(BlockingIOError, BrokenPipeError, ValueError, OSError):
            os.write(proc.stdin.fileno(), b".")

    async def supervise(self) -> None:
        """Restart the child if it dies while the server runs (until cancelled)."""
        while True:
            await asyncio.sleep(1.0)
            proc = self.proc
            if proc is not None and proc.poll() is not None:
                self.restarts += 1
                log.error("ingest pipeline exited with %s; restarting it", proc.returncode)
                self.start()

    def stop(self, timeout: float = 15.0) -> None:
        """Ask the child to finish its current batch and exit; kill it after ``timeout``."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        relay_thread, self.relay = self.relay, None
        if relay_thread is not None:
            relay_thread.join(RELAY_DRAIN)


def _die_with_parent() -> None:
    # Linux only; elsewhere the stdin EOF and parent-pid checks below still stop the child.
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def run_child(node: Node, parent: int | None) -> None:
    """Child side (``exchange-server pipeline``): run the pipeline until told to stop."""
    _die_with_parent()
    if parent is not None and os.getppid() != parent:
        return  # the parent died before we could arm the death signal
    asyncio.run(_child(node, parent))


async def _child(node: Node, parent: int | None) -> None:
    ingest = node_runner(node)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    fd = sys.stdin.fileno()
    os.set_blocking(fd, False)

    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        if not data:  # the parent closed our stdin: it is stopping
            loop.remove_reader(fd)
            stop.set()
        else:
            ingest.wake()

    loop.add_reader(fd, readable)

    async def watch_parent() -> None:
        while parent is not None:
            await asyncio.sleep(1.0)
            if os.getppid() != parent:
                stop.set()
                return

    async def comparisons() -> None:
        """Scheduled cross-comparison rules (HOME/rules.toml), checked once a minute."""
        while True:
            try:
                rules = load_rules(rules_path(node.config.home), missing_ok=True)
                if rules:
                    await asyncio.to_thread(run_due, node, rules, now=utcnow())
            except Exception:  # a bad rules file must not stop the pipeline
                log.exception("scheduled comparisons failed")
            await asyncio.sleep(COMPARE_INTERVAL)

    async def deadlines() -> None:
        """Deadlines of relayed queries, checked every [deadlines] tick_seconds (and at once:
        what a crash left undelivered goes out at start-up)."""
        workflow = ingest.router
        assert isinstance(workflow, Workflow)
        while True:
            try:
                report = await asyncio.to_thread(workflow.keeper.tick)
                if report.overdue or report.escalated or report.notices:
                    log.info("deadlines: %s", report.as_json())
            except Exception:  # one bad query must not stop the deadline checks
                log.exception("deadline check failed")
            await asyncio.sleep(node.config.deadlines.tick_seconds)

    async def crl() -> None:
        """The CRL watched: each change logged and audited (crl.stale / crl.fresh)."""
        watch = CrlWatch(node)
        while True:
            try:
                await asyncio.to_thread(watch.check, utcnow())
            except Exception:
                log.exception("CRL check failed")
            await asyncio.sleep(CRL_INTERVAL)

    task = asyncio.create_task(ingest.run(recover=False), name="ingest-pipeline")
    crl_task = asyncio.create_task(crl(), name="crl-watch")
    compare_task = asyncio.create_task(comparisons(), name="comparisons")
    deadline_task = asyncio.create_task(deadlines(), name="deadlines")
    watcher = asyncio.create_task(watch_parent())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    for t in (task, compare_task, deadline_task, crl_task, watcher, stopped):
        t.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    if task.done() and not task.cancelled() and task.exception() is not None:
        log.error("ingest pipeline failed: %r", task.exception())


def main(argv: list[str] | None = None) -> None:
    """``python -m exchange_server.pipeline.process --home HOME [--parent PID]
    [--log-to-parent --log-level LEVEL]``: the child ``serve`` starts (also ``exchange-server
    pipeline``). With ``--log-to-parent`` its records go to ``serve`` over stderr, at
    ``LEVEL``; otherwise where the home's ``[log]`` says. Exits 0 when told to stop, 3 with one
    line on stderr for a home it cannot open or a log file it cannot write."""
    parser = argparse.ArgumentParser(prog="exchange_server.pipeline.process")
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--parent", type=int, default=None)
    parser.add_argument("--log-to-parent", action="store_true")
    parser.add_argument("--log-level", type=check_level, default="INFO")
    args = parser.parse_args(argv)
    if args.log_to_parent:
        setup_logging(LogSettings(level=args.log_level), to_parent=True)
    try:
        node = Node.open(args.home)
        if not args.log_to_parent:
            setup_logging(node.config.log_settings())
    except ExchangeError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(e.exit_code) from None
    run_child(node, args.parent)


if __name__ == "__main__":
    main()
