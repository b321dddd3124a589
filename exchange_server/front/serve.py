"""``exchange-server serve``: the node process around the SFTP front.

:func:`run` recovers interrupted work before the listener opens (so recovery never races a live
upload), starts the SFTP front, the pipeline in its own process, the drop-folder watcher, the
audit checkpoints (every ``[audit] checkpoint_seconds``) and the retention runs (every
``[retention] interval_minutes``), and stops them all in order on SIGINT
or SIGTERM, signing a last checkpoint after the pipeline has stopped.
:func:`~exchange_common.cli.setup_logging` sends the log where ``[log]`` (or the ``--log-*``
options) say; the pipeline process hands its records to this one, which alone writes them
(decision 0011).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from exchange_common.cli import setup_logging
from exchange_common.errors import ExchangeError
from exchange_common.logs import LogSettings
from exchange_server.crl import crl_status
from exchange_server.front.dropfolder import DropFolder
from exchange_server.front.monitor import Monitor
from exchange_server.front.server import SFTPFront
from exchange_server.node import Node, utcnow
from exchange_server.pipeline.assembly import handover_to_process, node_spool
from exchange_server.pipeline.process import PipelineProcess
from exchange_server.pipeline.retention import keep_retention
from exchange_server.pipeline.runner import recover_spool
from exchange_server.store.checkpoints import checkpoint_now

__all__ = [
    "run",
]

#: Process lifecycle (the same logger the SFTP front's accept loop uses).
srv_log = logging.getLogger("exchange_server.front.server")


def _checkpoint(node: Node) -> None:
    """Sign and publish a checkpoint of the audit trail; a failure is logged, never fatal
    (the trail itself is unaffected, and the next interval tries again)."""
    try:
        row = checkpoint_now(node, utcnow())
    except ExchangeError as e:
        srv_log.error("audit checkpoint failed: %s", e)
    except Exception:
        srv_log.exception("audit checkpoint failed")
    else:
        if row is not None:
            srv_log.info("audit checkpoint signed: %d events, root %s", row.size, row.root[:16])


async def _checkpoints(node: Node) -> None:
    """Checkpoint the audit trail every ``[audit] checkpoint_seconds`` until cancelled."""
    while True:
        await asyncio.sleep(node.config.audit.checkpoint_seconds)
        await asyncio.to_thread(_checkpoint, node)


async def _serve(
    node: Node, host: str, port: int, log_level: str, monitor_at: tuple[str, int] | None
) -> None:
    # Recovery runs to completion before the listener opens, so it never races a live upload.
    await asyncio.to_thread(recover_spool, node, node_spool(node))
    crl = await asyncio.to_thread(crl_status, node, utcnow())
    if crl.current:
        srv_log.info("%s", crl.message)
    else:
        srv_log.error(
            "CRL not current (%s): %s; every department is refused until a current CRL is "
            "installed in %s",
            crl.code,
            crl.message,
            node.config.path(node.config.crl),
        )
    # The pipeline runs in its own process so that it and the SFTP front each get a core;
    # each committed upload wakes it.
    pipeline = PipelineProcess(node.config.home, log_level=log_level)
    ingest = handover_to_process(node, pipeline.wake)
    front = SFTPFront(node, ingest)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    monitor = Monitor(node.config.home, monitor_at) if monitor_at is not None else None
    if monitor is not None:
        m_host, m_port = await asyncio.to_thread(monitor.start)
        srv_log.info("monitor serving on http://%s:%d/", m_host, m_port)
        print(f"monitor on http://{m_host}:{m_port}/", flush=True)
    bound_host, bound_port = await front.start(host, port)
    pipeline.start()
    supervisor = asyncio.create_task(pipeline.supervise(), name="pipeline-supervisor")
    checkpoints = asyncio.create_task(_checkpoints(node), name="audit-checkpoints")
    drop = DropFolder(ingest, node.config.path(node.config.drop))
    await asyncio.to_thread(drop.start)
    # Evidence kept per [retention], expired material purged (each run audited); here, beside
    # the drop folder it also clears of plaintext.
    retention = asyncio.create_task(keep_retention(node), name="retention")
    srv_log.info("node %s serving SFTP on %s:%d", node.config.code, bound_host, bound_port)
    print(f"listening on {bound_host}:{bound_port}", flush=True)
    try:
        await stop.wait()
    finally:
        srv_log.info("shutting down")
        if monitor is not None:
            await asyncio.to_thread(monitor.stop)
        await asyncio.to_thread(drop.stop)
        await front.close()
        supervisor.cancel()
        checkpoints.cancel()
        retention.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await retention
        with contextlib.suppress(asyncio.CancelledError):
            await supervisor
        with contextlib.suppress(asyncio.CancelledError):
            await checkpoints
        await asyncio.to_thread(pipeline.stop)
        # The last checkpoint covers everything the node did, the pipeline's work included.
        await asyncio.to_thread(_checkpoint, node)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    srv_log.info("stopped")


def run(
    node: Node,
    *,
    host: str | None = None,
    port: int | None = None,
    log: LogSettings | None = None,
    monitor: tuple[str, int] | None = None,
) -> None:
    """Serve SFTP (and the pipeline, when present) until SIGINT or SIGTERM.

    ``host``/``port`` default to ``[sftp]`` in node.toml; port 0 picks a free port. ``log``
    defaults to ``[log]`` (:meth:`~exchange_server.config.NodeConfig.log_settings`). Prints
    ``listening on HOST:PORT`` on stdout once connections are accepted; with ``monitor``
    (host, port) it serves the monitor there first and prints ``monitor on
    http://HOST:PORT/``. Raises
    :class:`~exchange_common.errors.ExchangeError` for a start-up problem (no host key, no trust
    root, address in use, a log file that cannot be written or that another process writes).
    """
    cfg = node.config
    settings = log if log is not None else cfg.log_settings()
    try:
        setup_logging(settings)
        asyncio.run(
            _serve(
                node,
                host if host is not None else cfg.sftp.host,
                cfg.sftp.port if port is None else port,
                settings.level,
                monitor,
            )
        )
    except ExchangeError:
        raise
    finally:
        node.engine.dispose()
