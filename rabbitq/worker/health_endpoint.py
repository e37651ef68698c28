"""``rabbitq worker --health-port``: ``GET /health`` (and ``/``) over HTTP, on a thread of
its own.

200 while the worker is healthy (``health.py``), 503 otherwise; the body is one line,
``ok: <reason>`` or ``unhealthy: <reason>``. ``HEAD`` answers the same without the body;
any other path is 404. A single process serves its own health; under ``--processes N``
the supervisor serves every child's.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from rabbitq.errors import ConfigurationError
from rabbitq.worker.health import Health

log = logging.getLogger("rabbitq.worker")

# Probes come from the kubelet or a load balancer, not from loopback: all interfaces, as
# ``--metrics-port`` does. The answer says only whether the worker consumes, and which queues.
DEFAULT_BIND = "0.0.0.0"
PATHS = ("/", "/health")


class HealthEndpoint:
    """``verdict()`` served at ``http://bind:port/health`` until ``close``."""

    def __init__(self, server: ThreadingHTTPServer, thread: threading.Thread) -> None:
        self.server = server
        self.thread = thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @classmethod
    def serve(cls, port: int, bind: str, verdict: Callable[[], Health]) -> HealthEndpoint:
        try:
            server = ThreadingHTTPServer((bind, port), _handler(verdict))
        except OSError as exc:
            raise ConfigurationError(f"cannot serve health on {bind}:{port}: {exc}") from exc
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, name="rabbitq-health", daemon=True)
        thread.start()
        log.info("serving health on http://%s:%d/health", bind, port)
        return cls(server, thread)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def answer(health: Health) -> tuple[int, bytes]:
    """The status code and body for ``health``."""
    if health.healthy:
        return 200, f"ok: {health.reason}\n".encode()
    return 503, f"unhealthy: {health.reason}\n".encode()


def _handler(verdict: Callable[[], Health]) -> type[BaseHTTPRequestHandler]:
    class HealthHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._respond(body=True)

        def do_HEAD(self) -> None:
            self._respond(body=False)

        def _respond(self, *, body: bool) -> None:
            if self.path.split("?", 1)[0] not in PATHS:
                status, text = 404, b"not found: try /health\n"
            else:
                try:
                    health = verdict()
                except Exception as exc:  # the probe gets an answer, whatever went wrong
                    health = Health(False, f"health unknown: {exc!r}")
                status, text = answer(health)
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(text)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if body:
                self.wfile.write(text)

        def log_message(self, format: str, *args: object) -> None:
            # A probe every few seconds would fill the worker's log: debug only.
            log.debug("health %s: " + format, self.address_string(), *args)

    return HealthHandler
