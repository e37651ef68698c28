"""``--processes N``: N worker processes, each its own asyncio loop, restarted if one dies.

Children are spawned (not forked) so none inherits the supervisor's connections or threads.
A child that recycles itself (``process.py``) is replaced at once, without the backoff that
slows down the restart of one that keeps dying.
The first SIGTERM/SIGINT is forwarded to every child as SIGTERM (each finishes its running
tasks); a second one kills them, and the broker redelivers their unacked messages.
With ``--metrics-port`` the supervisor serves ``/metrics`` for all of them, in
prometheus-client's multiprocess mode (``metrics/endpoint.py``): set up before the first
child is spawned, told of every child that exits, removed at exit.
With ``--health-port`` it serves ``/health`` for all of them (``worker/health.py``): each
child reports to a directory the supervisor made, and the supervisor tells which pid runs
each index; healthy only while every child is.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.process
import os
import signal
import time
from dataclasses import replace
from types import FrameType
from typing import TYPE_CHECKING

from rabbitq.worker.process import (
    EXIT_NOW_CODE,
    RECYCLE_EXIT_CODE,
    WorkerConfig,
    configure_logging,
    run_worker_process,
)

if TYPE_CHECKING:
    from rabbitq.metrics.endpoint import MetricsEndpoint
    from rabbitq.worker.health import SupervisedHealth
    from rabbitq.worker.health_endpoint import HealthEndpoint

log = logging.getLogger("rabbitq.supervisor")

RESTART_BACKOFF_MAX = 10.0
QUICK_DEATH_SECONDS = 2.0


class Supervisor:
    def __init__(self, config: WorkerConfig, processes: int) -> None:
        self.config = replace(config, supervised=True)
        self.processes = processes
        self._context = multiprocessing.get_context("spawn")
        self._children: dict[int, multiprocessing.process.BaseProcess] = {}
        self._started_at: dict[int, float] = {}
        self._quick_deaths: dict[int, int] = {}
        self._signals = 0
        self._metrics: MetricsEndpoint | None = None
        self._health: SupervisedHealth | None = None
        self._health_endpoint: HealthEndpoint | None = None

    def run(self) -> int:
        # Its own lines (starts, restarts, recycles) are as much the worker's log as its
        # children's: without this only its warnings would show, and unformatted.
        configure_logging(self.config.loglevel, self.config.log_format)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        if self.config.metrics_port is not None:
            from rabbitq.metrics.endpoint import MetricsEndpoint

            # Before the first spawn: every child must find the directory in its environment.
            self._metrics = MetricsEndpoint.supervising(
                self.config.metrics_port, self.config.metrics_bind
            )
        try:
            self._serve_health()
            for slot in range(self.processes):
                self._start(slot)
            while self._signals == 0:
                time.sleep(0.2)
                for slot, child in list(self._children.items()):
                    if not child.is_alive() and self._signals == 0:
                        self._exited(child)
                        self._restart(slot, child.exitcode)
            for child in self._children.values():
                child.join()
                self._exited(child)
            log.info("all worker processes stopped")
        finally:
            if self._metrics is not None:
                self._metrics.close()
            if self._health_endpoint is not None:
                self._health_endpoint.close()
            if self._health is not None:
                self._health.remove()
        return 0

    def _serve_health(self) -> None:
        port = self.config.health_port
        if port is None:
            return
        from rabbitq.worker.health import SupervisedHealth
        from rabbitq.worker.health_endpoint import HealthEndpoint

        self._health = SupervisedHealth(self.processes)
        # Before the first spawn: every child writes its reports there.
        self.config = replace(self.config, health_dir=self._health.directory)
        self._health_endpoint = HealthEndpoint.serve(
            port, self.config.health_bind, self._health.verdict
        )

    def _exited(self, child: multiprocessing.process.BaseProcess) -> None:
        if self._metrics is not None and child.pid is not None:
            self._metrics.process_exited(child.pid)
        if self._health is not None and child.pid is not None:
            self._health.exited(child.pid)

    def _start(self, slot: int) -> None:
        # Each process is a node of its own (``nodename.py``): index 1..N, kept by its slot.
        config = replace(self.config, process_index=slot + 1, processes=self.processes)
        child = self._context.Process(
            target=run_worker_process, args=(config,), name=f"worker-{slot}", daemon=False
        )
        child.start()
        self._children[slot] = child
        self._started_at[slot] = time.monotonic()
        if self._health is not None:
            self._health.started(slot + 1, child.pid)
        log.info("started worker process %s (pid %s)", child.name, child.pid)
        if self._signals and child.pid is not None:
            # A signal came while it was being started (a recycled child is replaced without
            # looking again): the SIGTERM sent to the others missed it, and run() would wait
            # for it forever.
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGTERM)

    def _restart(self, slot: int, exitcode: int | None) -> None:
        if exitcode == RECYCLE_EXIT_CODE:
            log.info("worker process %d recycled; starting a fresh one", slot)
            self._start(slot)
            return
        if exitcode == -signal.SIGALRM:
            log.warning(
                "worker process %d ended by its recycle deadline; starting a fresh one", slot
            )
            self._start(slot)
            return
        lived = time.monotonic() - self._started_at[slot]
        quick = self._quick_deaths.get(slot, 0) + 1 if lived < QUICK_DEATH_SECONDS else 0
        self._quick_deaths[slot] = quick
        delay = min(RESTART_BACKOFF_MAX, 0.5 * 2 ** (quick - 1)) if quick else 0.0
        log.error(
            "worker process %d died (exit code %s); restarting in %.1fs", slot, exitcode, delay
        )
        time.sleep(delay)
        if self._signals == 0:
            self._start(slot)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info(
                "received %s: stopping worker processes gracefully (again to kill)",
                signal.Signals(signum).name,
            )
            self._send_all(signal.SIGTERM)
        else:
            log.warning("second signal: killing worker processes")
            self._send_all(signal.SIGKILL)
            if self._metrics is not None:
                self._metrics.discard()
            if self._health is not None:
                self._health.remove()
            os._exit(EXIT_NOW_CODE)

    def _send_all(self, signum: int) -> None:
        for child in self._children.values():
            if child.pid is not None and child.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signum)
