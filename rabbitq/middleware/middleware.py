"""The middleware seam: one class whose methods are hooks, called at fixed points.

Behaviour that cuts across every task (signals, stats, and later events, metrics, limits and
revokes) lives in a ``Middleware`` subclass instead of an ``if`` in the worker. Override only
the hooks you need; the others cost nothing, because the stack (``stack.py``) calls a hook
only on the middleware that override it.

Where each hook runs, and what an exception from it means::

    hook                          runs                                  if it raises
    before_publish(app, msg)      caller's thread, before the publish   the publish raises
    after_publish(app, msg)       caller's thread, after the confirm    logged, ignored
    process_start(app)            each worker process, before connect   the process exits
    worker_start(worker)          consuming has begun                   logged, ignored
    worker_stop(worker)           consuming stopped, tasks finished     logged, ignored
    message_received(delivery)    a delivery arrived, not decoded yet   logged, ignored
    task_received(ctx)            judged runnable; waits for a slot     logged, ignored
    admit(ctx)                    before it takes a slot: may wait      the task's failure
    before_process(ctx)           the task is about to run              the task's failure
    after_process(ctx, outcome)   the task returned or raised           logged, ignored
    after_retry(ctx, exc, eta)    its next attempt is confirmed          logged, ignored
    after_dead_letter(dead)       its dead letter is confirmed           logged, ignored
    after_skip(ctx, reason)       a before_process raised SkipTask      logged, ignored

``app`` is the ``rabbitq.App`` and ``worker`` the worker's consumer; both are typed ``Any``
here because this module sits below the app (annotate ``rabbitq.App`` in your own hooks).

"Logged, ignored" holds for any exception, ``SystemExit`` included: a hook never ends the
worker. Publish hooks are plain functions (they run in synchronous callers too). Worker
hooks may be plain or return an awaitable (``async def``); both run on the worker's event
loop, in the delivery's own asyncio task, so a context variable set in ``before_process`` is
seen by the task (a thread task gets a copy of the context taken after the hook) and by
``after_process``. A plain hook must not block: it holds up every task of the process.

``admit`` decides whether the task may start now (the limits: ``worker/limits.py``). It may
wait (a token, a slot) without holding a worker slot; raise ``Deferred`` once it has settled
the delivery elsewhere itself; and add to ``context.releases`` what to do once the run is
over (given back after its ack, or when it never ran).

``before_process`` may raise ``SkipTask`` to ack the message without running it. Any other
exception there is the task's failure, exactly as if the task had raised it: it is retried or
dead-lettered by the task's policy, never lost and never silently run.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rabbitq.message import TaskMessage
    from rabbitq.prepare import PreparedMessage
    from rabbitq.task import Task, TaskRequest
    from rabbitq.worker.delivery import Delivery
    from rabbitq.worker.interrupts import RunControl


@dataclass(slots=True)
class TaskContext:
    """One run of a task, handed to every processing hook.

    ``state`` is the middleware's own: a place to keep what ``before_process`` learned for
    ``after_process`` (a span, a start time), keyed by whatever the middleware likes.

    ``started`` is when the run began (``task_received`` hooks see the context before that).

    ``control``, when a ``before_process`` hook sets one (the time limits do), is the handle
    by which the run can be interrupted or abandoned (``rabbitq.worker.interrupts``).
    """

    delivery: Delivery
    message: TaskMessage
    task: Task
    request: TaskRequest
    worker: str  # the worker's name, ``pid@host``
    started: float = field(default_factory=time.perf_counter)
    state: dict[Any, Any] = field(default_factory=dict)
    control: RunControl | None = None
    # Set by ``admit`` hooks: called once the run is concluded (or did not happen), in order.
    releases: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    @property
    def runtime(self) -> float:
        """Seconds since the task started."""
        return time.perf_counter() - self.started


@dataclass(slots=True)
class Outcome:
    """How a run ended: ``value`` when it returned, ``exception`` when it raised.

    ``retried`` is set when the exception asked for another attempt (``self.retry()`` or
    ``autoretry_for``): Celery's ``task_failure`` is not sent for those.
    """

    value: Any = None
    exception: BaseException | None = None
    retried: bool = False

    @property
    def succeeded(self) -> bool:
        return self.exception is None


@dataclass(frozen=True)
class DeadLettered:
    """A message that went to a dead-letter queue, and why."""

    delivery: Delivery
    reason: str
    error: BaseException
    queue: str
    message: TaskMessage | None = None
    task: Task | None = None


class Middleware:
    """Subclass and override the hooks you need (see the module's table)."""

    # -- publishing (sync only: synchronous callers run them too) ------------------------------

    def before_publish(self, app: Any, message: PreparedMessage) -> None:
        """Before a task message is published (``delay``, canvas, a worker's follow-up)."""

    def after_publish(self, app: Any, message: PreparedMessage) -> None:
        """After the broker confirmed it."""

    # -- the worker's life ------------------------------------------------------------------

    def process_start(self, app: Any) -> Any:
        """In each worker process, before it connects (Celery's ``worker_process_init``)."""

    def worker_start(self, worker: Any) -> Any:
        """Consuming has begun (Celery's ``worker_ready``)."""

    def worker_stop(self, worker: Any) -> Any:
        """Consuming stopped and running tasks finished (Celery's ``worker_shutdown``)."""

    # -- one delivery -----------------------------------------------------------------------

    def message_received(self, delivery: Delivery) -> Any:
        """A delivery arrived; it is not decoded or judged yet."""

    def task_received(self, context: TaskContext) -> Any:
        """The delivery was judged runnable (not dead-lettered, not due later); it waits for
        a free slot (Celery's ``task_received``). ``context.runtime`` counts from the run."""

    def admit(self, context: TaskContext) -> Any:
        """May the task start? Wait here until it may, or raise ``Deferred`` once the
        delivery was settled elsewhere; anything else raised is the task's failure."""

    def before_process(self, context: TaskContext) -> Any:
        """The task is about to run. Raise ``SkipTask`` to ack it without running."""

    def after_process(self, context: TaskContext, outcome: Outcome) -> Any:
        """The task returned or raised; its follow-ups and ack come after this."""

    def after_retry(self, context: TaskContext, exception: BaseException, eta: dt.datetime) -> Any:
        """The next attempt was published (confirmed) and this delivery acked."""

    def after_dead_letter(self, dead: DeadLettered) -> Any:
        """A dead letter was published (confirmed) and the delivery acked."""

    def after_skip(self, context: TaskContext, reason: str) -> Any:
        """``before_process`` raised ``SkipTask``: acked without running."""


HOOKS = (
    "before_publish",
    "after_publish",
    "process_start",
    "worker_start",
    "worker_stop",
    "message_received",
    "task_received",
    "admit",
    "before_process",
    "after_process",
    "after_retry",
    "after_dead_letter",
    "after_skip",
)
PUBLISH_HOOKS = ("before_publish", "after_publish")
