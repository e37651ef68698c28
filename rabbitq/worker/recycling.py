"""Replacing a worker process: ``--max-tasks-per-child`` and ``--max-memory-per-child``.

Celery's meanings: after a task finishes, a process that has run N tasks, or whose resident
memory is above the limit (KiB), is recycled: it stops consuming, lets its running tasks
finish and ack, and exits; its supervisor starts a fresh one (a single unsupervised process
replaces its own image with a fresh interpreter, keeping its pid). The task that crossed the
limit completes first, as in Celery.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import resource
import signal
import sys
from collections.abc import Callable

from rabbitq.message import utcnow
from rabbitq.middleware import Middleware, Outcome, TaskContext

log = logging.getLogger("rabbitq.worker")


class Recycler:
    """The request to replace this process (``process.py`` carries it out once the consumer
    has stopped), and its deadline when a stuck thread set one."""

    def __init__(self, hostname: str, within: float) -> None:
        self.hostname = hostname
        self.within = within  # seconds a stuck thread's process has left, at most
        self.requested = asyncio.Event()
        self._gone_by: dt.datetime | None = None

    def recycle(self, reason: str) -> None:
        """Ask for this process to be replaced once its running tasks have finished."""
        if not self.requested.is_set():
            log.warning("recycling worker process %s: %s", self.hostname, reason)
            self.requested.set()

    def recycle_by(self, reason: str) -> dt.datetime:
        """As ``recycle``, but the process must be gone by the time returned (a stuck thread
        cannot be stopped any other way): a kernel timer ends it then at the latest, even if
        a thread holds the interpreter, and running tasks it cuts short are redelivered."""
        self.recycle(reason)
        if self._gone_by is None:
            self._gone_by = utcnow() + dt.timedelta(seconds=self.within)
            # SIGALRM's default action ends the process without running any Python.
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.setitimer(signal.ITIMER_REAL, self.within)
            log.warning(
                "worker process %s ends within %gs at the latest; tasks still running then "
                "are redelivered",
                self.hostname,
                self.within,
            )
        return self._gone_by

    def seconds_left(self) -> float | None:
        """Until the process must be gone, if a stuck thread set a deadline."""
        if self._gone_by is None:
            return None
        return max(0.0, (self._gone_by - utcnow()).total_seconds())


def end_now() -> None:
    """End this process at once, as its recycle deadline would (SIGALRM's default action):
    the broker redelivers everything it held; a supervisor starts a fresh one."""
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.setitimer(signal.ITIMER_REAL, 0.001)


def resident_kib() -> int:
    """This process's resident memory now (not its peak), in KiB."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError, IndexError):  # no procfs: the peak is what there is
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # KiB on Linux and the BSDs, bytes on macOS.
        return peak // 1024 if sys.platform == "darwin" else peak


class Recycling(Middleware):
    def __init__(
        self,
        recycle: Callable[[str], object],
        *,
        max_tasks: int | None = None,
        max_memory_kib: int | None = None,
    ) -> None:
        self.recycle = recycle
        self.max_tasks = max_tasks
        self.max_memory_kib = max_memory_kib
        self.tasks_run = 0
        self._asked = False

    def after_process(self, context: TaskContext, outcome: Outcome) -> None:
        self.tasks_run += 1
        if self._asked:
            return
        if self.max_tasks is not None and self.tasks_run >= self.max_tasks:
            self._ask(f"it ran {self.tasks_run} tasks (--max-tasks-per-child {self.max_tasks})")
        elif self.max_memory_kib is not None:
            used = resident_kib()
            if used > self.max_memory_kib:
                self._ask(
                    f"it uses {used} KiB after {context.task.name}[{context.message.id}] "
                    f"(--max-memory-per-child {self.max_memory_kib})"
                )

    def _ask(self, why: str) -> None:
        self._asked = True
        self.recycle(why)
