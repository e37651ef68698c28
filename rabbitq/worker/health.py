"""Is this worker consuming? What ``rabbitq worker --health-port`` answers (served by
``health_endpoint.py``).

A process is healthy while its connection to the broker is open and every queue it was
told to consume has a consumer on an open channel; not while it connects, reconnects after
the broker went away, or stops. The process does not answer that question from the HTTP
thread: its event loop writes a ``ProcessReport`` every ``REPORT_EVERY`` seconds, and the
endpoint judges the newest one. A report older than ``STALE_AFTER`` counts as unhealthy, so
a loop that no longer runs (blocked by a task that never awaits) shows as such.

Under ``--processes N`` the supervisor serves the port. Each child writes its reports to a
file named after its index in a directory the supervisor made (``ReportDirectory``); the
supervisor knows which pid each index runs under now, so a child that died, or one started
in its place that has not reported yet, counts as unhealthy. The answer is healthy only
when every child is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

log = logging.getLogger("rabbitq.worker")

REPORT_EVERY = 1.0  # seconds between a process's reports
STALE_AFTER = 5.0  # seconds: a report older than this is a process no longer heard from
DIRECTORY_PREFIX = "rabbitq-health-"


@dataclass(frozen=True)
class Health:
    healthy: bool
    reason: str  # one short line: what it consumes, or why it does not


@dataclass(frozen=True)
class ProcessReport:
    pid: int
    healthy: bool
    reason: str
    at: float  # time.time() when written


class Watched(Protocol):
    """What the reports read of ``worker.consumer.Consumer``."""

    queues: tuple[str, ...]

    @property
    def stopping(self) -> bool: ...
    @property
    def connected(self) -> bool: ...
    def consuming_queues(self) -> frozenset[str]: ...


def judge_consumer(
    *, stopping: bool, connected: bool, queues: tuple[str, ...], consuming: frozenset[str]
) -> Health:
    if stopping:
        return Health(False, "stopping")
    if not connected:
        return Health(False, "not connected to the broker (connecting or reconnecting)")
    missing = [queue for queue in queues if queue not in consuming]
    if missing:
        return Health(False, f"not consuming {', '.join(missing)}")
    return Health(True, f"consuming {', '.join(queues)}")


def judge_report(report: ProcessReport | None, pid: int | None, now: float) -> Health:
    """The health of the process running as ``pid`` (None: none runs), from its newest
    report."""
    if pid is None:
        return Health(False, "not running")
    if report is None or report.pid != pid:
        return Health(False, f"starting (pid {pid}, no report yet)")
    silent = now - report.at
    if silent > STALE_AFTER:
        return Health(False, f"silent for {silent:.0f}s (pid {pid})")
    return Health(report.healthy, report.reason)


def judge_processes(
    running: Mapping[int, int | None], reports: Mapping[int, ProcessReport | None], now: float
) -> Health:
    """A supervisor's health (``running``: each index's pid now, None while it is being
    restarted): healthy only if every process is."""
    judged = {
        index: judge_report(reports.get(index), pid, now) for index, pid in sorted(running.items())
    }
    failing = [
        f"process {i}: {health.reason}" for i, health in judged.items() if not health.healthy
    ]
    if failing:
        return Health(False, "; ".join(failing))
    return Health(True, f"all {len(judged)} processes consuming")


def consumer_health(consumer: Watched) -> Health:
    return judge_consumer(
        stopping=consumer.stopping,
        connected=consumer.connected,
        queues=consumer.queues,
        consuming=consumer.consuming_queues(),
    )


async def keep_reporting(
    consumer: Watched, report: Callable[[ProcessReport], None], every: float = REPORT_EVERY
) -> None:
    """Report ``consumer``'s health every ``every`` seconds, until cancelled."""
    while True:
        try:
            health = consumer_health(consumer)
        except Exception as exc:  # a report saying so beats a silent reporter
            health = Health(False, f"health unknown: {exc!r}")
        try:
            report(ProcessReport(os.getpid(), health.healthy, health.reason, time.time()))
        except OSError as exc:
            log.warning("could not write a health report: %s", exc)
        await asyncio.sleep(every)


class LatestReport:
    """A single process's reports, kept in memory for its own endpoint. The loop writes,
    the HTTP thread reads: one attribute, replaced whole."""

    def __init__(self) -> None:
        self.report: ProcessReport | None = None

    def put(self, report: ProcessReport) -> None:
        self.report = report

    def verdict(self) -> Health:
        return judge_report(self.report, os.getpid(), time.time())


class ReportDirectory:
    """Reports of a supervisor's children: ``<index>.json`` in one directory."""

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)

    def writer(self, index: int) -> Callable[[ProcessReport], None]:
        path = self.directory / f"{index}.json"
        partial = self.directory / f".{index}.json.part"

        def write(report: ProcessReport) -> None:
            # Replaced whole: a reader never sees half a report.
            partial.write_text(json.dumps(asdict(report)))
            os.replace(partial, path)

        return write

    def read(self, index: int) -> ProcessReport | None:
        try:
            found = json.loads((self.directory / f"{index}.json").read_text())
            return ProcessReport(
                int(found["pid"]), bool(found["healthy"]), str(found["reason"]), float(found["at"])
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None  # missing or unreadable: not reported


class SupervisedHealth:
    """The supervisor's side: which pid runs each index now, and their reports."""

    def __init__(self, processes: int) -> None:
        self.directory = tempfile.mkdtemp(prefix=f"{DIRECTORY_PREFIX}{os.getpid()}-")
        self._reports = ReportDirectory(self.directory)
        self._running: dict[int, int | None] = dict.fromkeys(range(1, processes + 1))

    def started(self, index: int, pid: int | None) -> None:
        self._running = {**self._running, index: pid}

    def exited(self, pid: int) -> None:
        # Replaced whole: the HTTP thread reads the mapping while this runs.
        self._running = {
            index: None if running == pid else running for index, running in self._running.items()
        }

    def verdict(self) -> Health:
        running = self._running
        reports = {index: self._reports.read(index) for index in running}
        return judge_processes(running, reports, time.time())

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            shutil.rmtree(self.directory)
