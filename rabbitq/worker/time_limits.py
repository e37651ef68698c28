"""Time limits, enforced as middleware: soft, hard, and the broker's consumer_timeout.

``before_process`` works out the run's limits (``timeouts.py``: the message's ``timelimit``
header, else the task's ``time_limit`` and ``soft_time_limit``, else the App's defaults)
and, if it has any, gives the run a ``RunControl`` and arms a timer for each of its own
limits. The consumer-timeout ceiling, which every run has, is watched by one sweep for all
runs instead (a timer per run would cost more than the rest of the middleware). At the soft
limit the task gets ``SoftTimeLimitExceeded``; at the hard limit it is stopped
(``TimeLimitExceeded``). A thread that has not stopped ``grace`` seconds later (blocked in
C, or it swallowed the exception) is abandoned: the pipeline parks its message and the
process is recycled (``pipeline.py``). An ``async def`` task that swallows its cancellation
cannot be abandoned (it runs on the worker's own loop): it is cancelled again every
``grace`` seconds, and said so in the log.

A run with no limits and no consumer timeout in force costs nothing here but the lookup.
"""

from __future__ import annotations

import asyncio
import logging
import time

from rabbitq.middleware import Middleware, Outcome, TaskContext
from rabbitq.timeouts import ceiling, limits_for
from rabbitq.worker.interrupts import RunControl

log = logging.getLogger("rabbitq.worker")

HARD_GRACE = 2.0  # seconds a task has to stop after its hard limit before it is abandoned
SWEEP_EVERY = 1.0  # seconds between looks at the runs that have only the ceiling...
SWEEP_FRACTION = 0.05  # ...or this fraction of the ceiling, if less


class TimeLimits(Middleware):
    def __init__(self, consumer_timeout: float | None, *, grace: float = HARD_GRACE) -> None:
        self.consumer_timeout = consumer_timeout
        self.grace = grace
        window = ceiling(consumer_timeout)
        self._sweep_every = min(SWEEP_EVERY, window * SWEEP_FRACTION) if window else SWEEP_EVERY
        # Runs limited by the ceiling only: id(context) -> (monotonic deadline, context).
        self._watched: dict[int, tuple[float, TaskContext]] = {}
        self._sweeper: asyncio.TimerHandle | None = None

    def before_process(self, context: TaskContext) -> None:
        now = time.monotonic()
        limits = limits_for(
            context.task, context.message, self.consumer_timeout, now - context.delivery.arrived
        )
        if limits is None:
            context.control = RunControl()  # no limit, but a run that can still be stopped
            return
        control = context.control = RunControl(limits.soft, limits.hard)
        if limits.capped and limits.soft is None:
            assert limits.hard is not None
            self._watched[id(context)] = (now + limits.hard, context)
            if self._sweeper is None:
                self._arm_sweep()
            return
        loop = asyncio.get_running_loop()
        timers = []
        if limits.soft is not None:
            timers.append(loop.call_later(limits.soft, self._soft, context, control))
        if limits.hard is not None:
            timers.append(loop.call_later(limits.hard, self._hard, context, control))
        context.state[self] = timers

    def after_process(self, context: TaskContext, outcome: Outcome) -> None:
        self._disarm(context)

    def after_skip(self, context: TaskContext, reason: str) -> None:
        self._disarm(context)

    def _disarm(self, context: TaskContext) -> None:
        if self._watched.pop(id(context), None) is None:
            for timer in context.state.pop(self, ()):
                timer.cancel()

    def _arm_sweep(self) -> None:
        loop = asyncio.get_running_loop()
        self._sweeper = loop.call_later(self._sweep_every, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        now = time.monotonic()
        for key, (deadline, context) in list(self._watched.items()):
            control = context.control
            if control is None or control.finished or control.abandoned:
                del self._watched[key]  # parked or given up: no after_process comes
            elif deadline <= now:
                del self._watched[key]
                self._hard(context, control)
        if self._watched:
            self._arm_sweep()

    def _soft(self, context: TaskContext, control: RunControl) -> None:
        if control.finished or control.abandoned:
            return
        log.warning(
            "task %s[%s] passed its soft time limit (%gs): raising SoftTimeLimitExceeded in it",
            context.task.name,
            context.message.id,
            control.soft_limit,
        )
        control.interrupt_soft()

    def _hard(self, context: TaskContext, control: RunControl) -> None:
        if control.finished or control.abandoned:
            return
        log.error(
            "task %s[%s] passed its hard time limit (%gs%s): stopping it",
            context.task.name,
            context.message.id,
            control.hard_limit,
            "" if context.message.timelimit[1] or context.task.time_limit else
            ", the consumer_timeout ceiling",
        )  # fmt: skip
        control.interrupt_hard()
        loop = asyncio.get_running_loop()
        loop.call_later(self.grace, self._still_running, context, control)

    def _still_running(self, context: TaskContext, control: RunControl) -> None:
        if control.finished or control.abandoned:
            return
        if context.task.is_async:
            log.error(
                "task %s[%s] swallowed its cancellation and is still running; cancelling it "
                "again (an async task cannot be abandoned: it holds its slot until it stops)",
                context.task.name,
                context.message.id,
            )
            control.interrupt_hard()
            asyncio.get_running_loop().call_later(self.grace, self._still_running, context, control)
            return
        log.error(
            "task %s[%s] did not stop %gs after its hard time limit (blocked outside Python, "
            "or it caught TimeLimitExceeded); abandoning its thread: this process will be "
            "recycled",
            context.task.name,
            context.message.id,
            self.grace,
        )
        control.abandon()
