"""One worker process: an asyncio loop running a ``Consumer`` until told to stop.

SIGTERM or SIGINT: stop consuming, let running tasks finish and ack, exit 0.
A second signal: exit at once; the broker redelivers whatever was unfinished.

Recycled (``--max-tasks-per-child``, ``--max-memory-per-child``, or a thread stuck past its
hard time limit): the same graceful stop, then a supervised process exits with
``RECYCLE_EXIT_CODE`` and its supervisor starts a fresh one, while a single unsupervised
process replaces itself with a fresh interpreter (``exec``: same pid, same arguments), which
also ends a stuck thread. A stop signal while its tasks finish, or while one image gives way
to the next, still means stop: the process exits 0 instead of coming back.

With ``--health-port`` its event loop reports the consumer's health every second
(``health.py``): to its own ``/health`` endpoint, or, supervised, to the supervisor's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from rabbitq.app import App
from rabbitq.app_path import load_app
from rabbitq.nodename import DEFAULT_NODENAME, format_nodename
from rabbitq.routing import load_routing
from rabbitq.task_logs import LogFormat, task_log_handler
from rabbitq.worker.consumer import Consumer
from rabbitq.worker.health import LatestReport, ProcessReport, ReportDirectory, keep_reporting
from rabbitq.worker.health_endpoint import HealthEndpoint
from rabbitq.worker.interrupts import STOP_SIGNALS

log = logging.getLogger("rabbitq.worker")

EXIT_NOW_CODE = 130
RECYCLE_EXIT_CODE = 75  # EX_TEMPFAIL: "start me again"
RECYCLE_MARGIN = 1.0  # seconds: a recycle with a deadline gives way this long before it


@dataclass(frozen=True)
class WorkerConfig:
    """Everything a worker process needs; plain data so it crosses a process boundary."""

    app_path: str
    queues: tuple[str, ...]
    concurrency: int = 8
    prefetch: int | None = None
    coordinate_chords: bool = True
    routing: str | None = None
    loglevel: str = "INFO"
    log_format: LogFormat = "plain"  # or "json": one object per record (``task_logs.py``)
    shutdown_timeout: float | None = None
    max_tasks_per_child: int | None = None
    max_memory_per_child: int | None = None  # KiB
    nodename: str = DEFAULT_NODENAME  # a template (``nodename.py``), formatted per process
    process_index: int = 0  # 1..N under a supervisor, 0 for a single process
    processes: int = 1
    task_events: bool | None = None  # -E; None: App(worker_send_task_events=)
    heartbeat: bool = True  # worker-online/heartbeat/offline events
    metrics_port: int | None = None  # /metrics (``metrics/endpoint.py``); None: no metrics
    metrics_bind: str = "0.0.0.0"
    health_port: int | None = None  # /health (``health_endpoint.py``); None: not served
    health_bind: str = "0.0.0.0"
    # A supervised child's: where it writes its health reports (``health.ReportDirectory``).
    health_dir: str | None = None
    # A supervised child leaves SIGINT (Ctrl-C hits the whole process group) to its
    # supervisor, which forwards one SIGTERM; otherwise Ctrl-C would count as two signals.
    supervised: bool = False


def configure_logging(level: str, log_format: LogFormat = "plain") -> None:
    # Every record reaching this handler, user loggers' too, says which task wrote it.
    logging.basicConfig(level=level.upper(), handlers=[task_log_handler(sys.stderr, log_format)])


def load_configured_app(config: WorkerConfig) -> App:
    app = load_app(config.app_path)
    if config.routing:
        app.topology = load_routing(config.routing)
    return app


class StopSignals:
    """SIGTERM and SIGINT (SIGTERM only in a supervised child): the first asks for a graceful
    stop (``stop_requested``), a second exits at once."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, supervised: bool) -> None:
        self.stop_requested = asyncio.Event()
        # Every stop signal delivered, counted as it arrives (``stop_requested`` is set later,
        # once the loop gets to it).
        self.arrived: list[int] = []
        if supervised:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        for signum in (signal.SIGTERM,) if supervised else STOP_SIGNALS:
            loop.add_signal_handler(signum, self._on_signal, signum)
            # The loop dispatches a signal through its wakeup fd; the Python-level handler it
            # installs does nothing. This one counts instead, at once: a signal delivered
            # before they are blocked for an exec has been counted when blocking returns.
            signal.signal(signum, self._count)
        # A process that re-executed itself to recycle starts with them blocked (pending, if
        # one came during the exchange of images): handled now, they are delivered.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)

    def _count(self, signum: int, _frame: FrameType | None) -> None:
        self.arrived.append(signum)

    def _on_signal(self, signum: int) -> None:
        if self.stop_requested.is_set():
            log.warning("second signal: exiting now; unfinished tasks will be redelivered")
            os._exit(EXIT_NOW_CODE)
        log.info(
            "received %s: finishing running tasks (signal again to exit now)",
            signal.Signals(signum).name,
        )
        self.stop_requested.set()


async def serve(
    config: WorkerConfig, report_health: Callable[[ProcessReport], None] | None = None
) -> bool:
    """Run until told to stop (False) or to recycle the process (True), reporting the
    consumer's health to ``report_health`` meanwhile, if given."""
    app = load_configured_app(config)
    if config.metrics_port is not None:
        # Imported only here: a worker without metrics never loads prometheus-client, and
        # a supervised child does only after its supervisor set the multiprocess directory.
        from rabbitq.metrics.worker_metrics import WorkerMetrics

        app.add_middleware(WorkerMetrics())
    consumer = Consumer(
        app,
        config.queues,
        concurrency=config.concurrency,
        prefetch=config.prefetch,
        coordinate_chords=config.coordinate_chords,
        max_tasks_per_child=config.max_tasks_per_child,
        max_memory_per_child=config.max_memory_per_child,
        recycle_within=config.shutdown_timeout,
        nodename=format_nodename(config.nodename, config.process_index, processes=config.processes),
        task_events=config.task_events,
        heartbeat=config.heartbeat,
    )
    signals = StopSignals(asyncio.get_running_loop(), supervised=config.supervised)
    reporting = None
    if report_health is not None:
        # From before the first connection: a worker waiting for the broker says so.
        reporting = asyncio.create_task(keep_reporting(consumer, report_health))
    await consumer.middleware.emit_raising("process_start", app)
    # A signal that waited through a recycle's exec is counted by now: then no start at all
    # (a start cut short mid-connection would leave a reconnecting connection behind).
    if not signals.arrived:
        await consume_until_stopped_or_recycled(consumer, signals.stop_requested, config.supervised)
    recycle = consumer.recycler.requested.is_set() and not signals.arrived
    left = consumer.recycler.seconds_left()
    if recycle and left is not None:
        # A stuck thread set a deadline, which the kernel enforces by ending the process:
        # give way before it, so that a fresh process takes over (tasks cut short by that
        # are redelivered by the broker), orderly closing or not.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                consumer.stop(max(0.0, left - 2 * RECYCLE_MARGIN)), max(0.0, left - RECYCLE_MARGIN)
            )
    else:
        await consumer.stop(config.shutdown_timeout)
    if reporting is not None:
        reporting.cancel()
    if not recycle:
        return False
    # Until the fresh image handles them, a stop signal would meet the default action (exec
    # resets handlers to it), killing the process: blocked, it waits instead, pending across
    # the exec. One that came while running tasks were finishing means stop, not recycle.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    return not signals.arrived


async def consume_until_stopped_or_recycled(
    consumer: Consumer, stop_requested: asyncio.Event, supervised: bool = False
) -> None:
    # Starting waits for the broker as long as it takes (with backoff); a signal meanwhile
    # ends the wait instead of a start that would never come.
    starting = asyncio.create_task(consumer.start())
    stopping = asyncio.create_task(stop_requested.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
    else:
        starting.result()  # a declaration conflict, say: the worker exits with it
        recycling = asyncio.create_task(consumer.recycler.requested.wait())
        shutdown = asyncio.create_task(consumer.node.shutdown_requested.wait())
        await asyncio.wait({stopping, recycling, shutdown}, return_when=asyncio.FIRST_COMPLETED)
        recycling.cancel()
        shutdown.cancel()
        if consumer.node.shutdown_requested.is_set() and not stop_requested.is_set():
            stop_whole_worker(supervised)
    stopping.cancel()


def stop_whole_worker(supervised: bool) -> None:
    """Remote control's shutdown: the whole worker stops, not one of its processes (which
    its supervisor would start again). A supervised process asks the supervisor, which
    stops every process as for a SIGTERM; a single process just stops."""
    if supervised:
        with contextlib.suppress(ProcessLookupError):
            os.kill(os.getppid(), signal.SIGTERM)


def run_worker_process(config: WorkerConfig) -> None:
    """Entry point of one worker process (also the target of supervised children)."""
    # A process that re-executed itself to recycle may carry the timer that was to end the
    # old image (``Recycler.recycle_by`` in ``recycling.py``): this one starts clean.
    signal.setitimer(signal.ITIMER_REAL, 0)
    configure_logging(config.loglevel, config.log_format)
    endpoint = None
    if config.metrics_port is not None and not config.supervised:
        from rabbitq.metrics.endpoint import MetricsEndpoint

        endpoint = MetricsEndpoint.single_process(config.metrics_port, config.metrics_bind)
    health = None
    report_health: Callable[[ProcessReport], None] | None = None
    if config.health_dir is not None:  # supervised: the supervisor serves the port
        report_health = ReportDirectory(config.health_dir).writer(config.process_index)
    elif config.health_port is not None:
        latest = LatestReport()
        report_health = latest.put
        health = HealthEndpoint.serve(config.health_port, config.health_bind, latest.verdict)
    try:
        recycle = asyncio.run(serve(config, report_health))
    finally:
        if endpoint is not None:
            endpoint.close()
        if health is not None:
            health.close()
    if recycle:
        replace_process(config)


def replace_process(config: WorkerConfig) -> None:
    """Recycled: end this process so that a fresh one takes over. Nothing of it survives,
    stuck threads included."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    if config.supervised:
        os._exit(RECYCLE_EXIT_CODE)
    # Cancel the deadline timer first: exec keeps it, and the old image is gone with exec.
    signal.setitimer(signal.ITIMER_REAL, 0)
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
