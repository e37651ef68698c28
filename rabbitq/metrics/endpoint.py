"""A worker's ``/metrics`` (``rabbitq worker --metrics-port``), served over HTTP by
prometheus-client's own server, on a thread of its own.

A single worker process serves its own registry: prometheus-client's default one, where the
worker's metrics (``worker_metrics.py``) are, with the client's process and platform metrics
and any the app defines. Recycled (``--max-tasks-per-child``), such a process replaces its
image, so its counters start again from zero: Prometheus' ``rate`` and ``increase`` take
that as the counter reset it is.

Under ``--processes N`` the supervisor serves, in prometheus-client's multiprocess mode:

* before it spawns any child it points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh private
  directory (unless the environment names one already), so every child, a fresh
  interpreter inheriting the environment, has it set before anything imports the client,
  and writes its figures to files of its own there;
* it answers each scrape with the sum over those files (``MultiProcessCollector``);
* when a child exits (recycled, or died), ``mark_process_dead`` drops its ``livesum`` gauge
  files, so it stops counting as in flight, while its counters and histograms stay: the
  worker's totals never go backwards while the supervisor lives;
* at exit the private directory is removed. A directory named in the environment is the
  user's: it is neither wiped nor removed (wipe it between runs, as prometheus-client asks).

This module imports prometheus-client only once the directory is set.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
from typing import Any

from rabbitq.errors import ConfigurationError

log = logging.getLogger("rabbitq.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# A worker is scraped from the Prometheus server's host, and inside a container loopback is
# unreachable from outside: all interfaces, as Prometheus' own exporters do. It serves
# counts only, never a message or an action.
DEFAULT_BIND = "0.0.0.0"


class MetricsEndpoint:
    """``/metrics`` on ``bind:port`` until ``close``."""

    def __init__(
        self, server: Any, thread: threading.Thread, directory: str | None, owned: bool
    ) -> None:
        self.server = server
        self.thread = thread
        self.directory = directory  # the multiprocess directory, if any
        self.owned = owned  # created here: removed at close

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    @classmethod
    def supervising(cls, port: int, bind: str = DEFAULT_BIND) -> MetricsEndpoint:
        """The supervisor's: sets up the multiprocess directory; call before spawning."""
        directory = os.environ.get(MULTIPROC_ENV)
        owned = not directory
        if not directory:
            directory = tempfile.mkdtemp(prefix="rabbitq-metrics-")
            os.environ[MULTIPROC_ENV] = directory
        elif not os.path.isdir(directory):
            raise ConfigurationError(f"${MULTIPROC_ENV} names {directory}, not a directory")
        try:
            server, thread = serve_registry(_multiprocess_registry(directory), port, bind)
        except BaseException:
            if owned:
                shutil.rmtree(directory, ignore_errors=True)
                del os.environ[MULTIPROC_ENV]
            raise
        log.info("serving metrics of all worker processes on http://%s:%d/metrics", bind, port)
        return cls(server, thread, directory, owned)

    @classmethod
    def single_process(cls, port: int, bind: str = DEFAULT_BIND) -> MetricsEndpoint:
        """A lone worker process's: its own registry (or the multiprocess directory the
        environment names, if it names one: then the figures are in its files)."""
        from rabbitq.metrics.prometheus import prometheus_client

        directory = os.environ.get(MULTIPROC_ENV) or None
        registry = _multiprocess_registry(directory) if directory else prometheus_client.REGISTRY
        server, thread = serve_registry(registry, port, bind)
        log.info("serving metrics on http://%s:%d/metrics", bind, port)
        return cls(server, thread, directory, owned=False)

    def process_exited(self, pid: int) -> None:
        """A child is gone: its live gauges stop counting; its counters stay."""
        if self.directory is None:
            return
        from rabbitq.metrics.prometheus import prometheus_client

        prometheus_client.multiprocess.mark_process_dead(pid, self.directory)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.discard()

    def discard(self) -> None:
        """Remove the private directory (also when exiting at once, without ``close``)."""
        if self.owned and self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            with contextlib.suppress(KeyError):
                if os.environ[MULTIPROC_ENV] == self.directory:
                    del os.environ[MULTIPROC_ENV]
            self.owned = False


def _multiprocess_registry(directory: str) -> Any:
    from rabbitq.metrics.prometheus import prometheus_client

    registry = prometheus_client.CollectorRegistry()
    prometheus_client.multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return registry


def serve_registry(registry: Any, port: int, bind: str) -> tuple[Any, threading.Thread]:
    """``registry`` at ``http://bind:port/metrics`` on a daemon thread (prometheus-client's
    server): the server (``shutdown()`` it) and its thread."""
    from rabbitq.metrics.prometheus import prometheus_client

    try:
        server, thread = prometheus_client.start_http_server(port, addr=bind, registry=registry)
    except OSError as exc:
        raise ConfigurationError(f"cannot serve metrics on {bind}:{port}: {exc}") from exc
    return server, thread
