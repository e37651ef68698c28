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

    def after_process(self, context: TaskContext, outcome: Outcome) -> None:
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
