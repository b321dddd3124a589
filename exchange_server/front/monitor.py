"""The monitor: ``/metrics``, ``/healthz``, ``/status.json`` and the status page, over HTTP.

Off unless ``[monitor] address`` (or ``serve --monitor``) names a host and port. Loopback is the
advice: the monitor has no login, so a wider address belongs behind a proxy that adds one (a
warning says so). Read-only: GET and HEAD only, nothing a request says is used but its path,
no personal data in any answer. It runs on its own threads and opens its own connection pool
to the store, so a slow scrape never delays an upload.

- ``/healthz``: 200 ``{"status": "ok"}`` when the store answers, 503 naming the failure when
  not (for a load balancer or a process supervisor);
- ``/status.json``: the status document (schema ``exchange-node-status/1``) with ``attention``
  and ``attention_reasons``, as ``status --json`` gives them;
- ``/metrics``: Prometheus text (:mod:`exchange_server.front.metrics`);
- ``/``: the page for people (:mod:`exchange_server.front.status_page`).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from exchange_common.errors import InputError
from exchange_common.net import parse_host_port
from exchange_server.front.metrics import StoreCollector, exposition, watch_stage_lines
from exchange_server.front.status_page import CSP, render_page
from exchange_server.node import Node, utcnow
from exchange_server.store.status import attention_reasons, node_status

__all__ = ["Monitor", "parse_address"]

log = logging.getLogger("exchange_server.front.monitor")


def parse_address(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as a pair; ``InputError`` E_CONFIG otherwise
    (the rule is :func:`exchange_common.net.parse_host_port`)."""
    try:
        return parse_host_port(value)
    except ValueError:
        raise InputError(
            f"monitor address {value!r} is not HOST:PORT (e.g. 127.0.0.1:9464)", code="E_CONFIG"
        ) from None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "exchange-node"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("monitor %s " + format, self.client_address[0], *args)

    def _send(self, status: int, body: bytes, content_type: str, *, head: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, status: int, doc: Any, *, head: bool) -> None:
        body = (json.dumps(doc, ensure_ascii=False, indent=1) + "\n").encode()
        self._send(status, body, "application/json; charset=utf-8", head=head)

    def _answer(self, *, head: bool) -> None:
        path = self.path.split("?", 1)[0]
        node = self.server.node
        try:
            if path == "/healthz":
                with node.session(write=False) as s:
                    s.execute(text("SELECT 1"))
                self._json(200, {"status": "ok"}, head=head)
            elif path == "/metrics":
                body = exposition(self.server.collector)
                self._send(200, body, CONTENT_TYPE_LATEST, head=head)
            elif path in ("/", "/status.json"):
                now = utcnow()
                doc = node_status(node, now)
                reasons = attention_reasons(doc, now)
                if path == "/status.json":
                    extra = {"attention": bool(reasons), "attention_reasons": reasons}
                    self._json(200, doc | extra, head=head)
                else:
                    page = render_page(doc, reasons).encode()
                    self._send(200, page, "text/html; charset=utf-8", head=head)
            else:
                self._json(404, {"error": "not found"}, head=head)
        except Exception as e:  # the store is down or a file is unreadable: say so, keep serving
            log.warning("monitor %s failed: %s", path, e)
            self._json(503, {"status": "unavailable", "error": type(e).__name__}, head=head)

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def _refuse(self) -> None:
        self.send_response(405)
        self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    node: Node
    collector: StoreCollector


class Monitor:
    """The monitor of one ``serve`` process (see the module docstring)."""

    def __init__(self, home: Path, address: tuple[str, int]) -> None:
        self.home = home
        self.address = address
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> tuple[str, int]:
        """Listen and serve on a thread; the bound (host, port). Raises ``InputError``
        E_CONFIG when the address cannot be bound (in use, not this host's)."""
        host, port = self.address
        try:
            server = _Server((host, port), _Handler)
        except OSError as e:
            raise InputError(
                f"monitor cannot listen on {host}:{port}: {e.strerror or e}", code="E_CONFIG"
            ) from None
        server.node = Node.open(self.home)  # its own pool: scrapes never wait for uploads
        server.collector = StoreCollector(server.node)
        watch_stage_lines()
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="monitor", daemon=True)
        self._thread.start()
        bound = server.server_address
        if not _loopback(host):
            log.warning(
                "monitor on %s:%d is reachable from other hosts and has no login: "
                "put it behind a proxy that authenticates, or bind it to 127.0.0.1",
                host,
                port,
            )
        return str(bound[0]), int(bound[1])

    def stop(self) -> None:
        """Stop serving and close the store connections (idempotent)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.node.engine.dispose()
        if self._thread is not None:
            self._thread.join(timeout=5)
