"""One worker process: an asyncio loop running a ``Consumer`` until told to stop.

SIGTERM or SIGINT: stop consuming, let running tasks finish and ack, exit 0.
A second signal: exit at once; the broker redelivers whatever was unfinished.

Recycled (``--max-tasks-per-child``, ``--max-memory-per-child``, or a thread stuck past its
hard time limit): the same graceful stop, then a supervised process exits with
``RECYCLE_EXIT_CODE`` and its supervisor starts a fresh one, while a single unsupervised
process replaces itself with a fresh interpreter (``exec``: same pid, same arguments), which
also ends a stuck thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from dataclasses import dataclass

from rabbitq.app import App
from rabbitq.app_path import load_app
from rabbitq.routing import load_routing
from rabbitq.worker.consumer import Consumer

log = logging.getLogger("rabbitq.worker")

EXIT_NOW_CODE = 130
RECYCLE_EXIT_CODE = 75  # EX_TEMPFAIL: "start me again"


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
    shutdown_timeout: float | None = None
    max_tasks_per_child: int | None = None
    max_memory_per_child: int | None = None  # KiB
    # A supervised child leaves SIGINT (Ctrl-C hits the whole process group) to its
    # supervisor, which forwards one SIGTERM; otherwise Ctrl-C would count as two signals.
    supervised: bool = False


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="[%(asctime)s: %(levelname)s/%(processName)s %(process)d] %(name)s: %(message)s",
        stream=sys.stderr,
    )


def load_configured_app(config: WorkerConfig) -> App:
    app = load_app(config.app_path)
    if config.routing:
        app.topology = load_routing(config.routing)
    return app


async def serve(config: WorkerConfig) -> bool:
    """Run until told to stop (False) or to recycle the process (True)."""
    app = load_configured_app(config)
    consumer = Consumer(
        app,
        config.queues,
        concurrency=config.concurrency,
        prefetch=config.prefetch,
        coordinate_chords=config.coordinate_chords,
        max_tasks_per_child=config.max_tasks_per_child,
        max_memory_per_child=config.max_memory_per_child,
        recycle_within=config.shutdown_timeout,
    )
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop_requested.is_set():
            log.warning("second signal: exiting now; unfinished tasks will be redelivered")
            os._exit(EXIT_NOW_CODE)
        log.info(
            "received %s: finishing running tasks (signal again to exit now)",
            signal.Signals(signum).name,
        )
        stop_requested.set()

    if config.supervised:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        loop.add_signal_handler(signal.SIGTERM, on_signal, signal.SIGTERM)
    else:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)
    await consumer.middleware.emit_raising("process_start", app)
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
        recycling = asyncio.create_task(consumer.recycling.wait())
        await asyncio.wait({stopping, recycling}, return_when=asyncio.FIRST_COMPLETED)
        recycling.cancel()
    stopping.cancel()
    recycle = consumer.recycling.is_set() and not stop_requested.is_set()
    left = consumer.seconds_left()
    await consumer.stop(left if recycle and left is not None else config.shutdown_timeout)
    return recycle


def run_worker_process(config: WorkerConfig) -> None:
    """Entry point of one worker process (also the target of supervised children)."""
    # A process that re-executed itself to recycle may carry the timer that was to end the
    # old image (``Consumer.recycle_by``): this one starts clean.
    signal.setitimer(signal.ITIMER_REAL, 0)
    configure_logging(config.loglevel)
    if asyncio.run(serve(config)):
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
