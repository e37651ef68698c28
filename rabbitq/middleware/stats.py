"""Counts of what one worker process did, kept by a middleware (read by the worker's log
line at shutdown, and by later metrics)."""

from __future__ import annotations

import datetime as dt

from rabbitq.middleware.middleware import DeadLettered, Middleware, Outcome, TaskContext


class WorkerStats(Middleware):
    def __init__(self) -> None:
        self.succeeded = 0
        self.failed = 0
        self.retried = 0
        self.dead_lettered = 0
        self.skipped = 0
        self.by_task: dict[str, int] = {}  # runs per task name (``inspect stats``' total)

    def after_process(self, context: TaskContext, outcome: Outcome) -> None:
        name = context.task.name
        self.by_task[name] = self.by_task.get(name, 0) + 1
        if outcome.exception is None:
            self.succeeded += 1
        elif not outcome.retried:
            self.failed += 1

    def after_retry(self, context: TaskContext, exception: BaseException, eta: dt.datetime) -> None:
        self.retried += 1

    def after_dead_letter(self, dead: DeadLettered) -> None:
        self.dead_lettered += 1

    def after_skip(self, context: TaskContext, reason: str) -> None:
        self.skipped += 1
