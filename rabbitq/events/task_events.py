"""Task events (``rabbitq worker -E``) from the middleware hooks, as Celery 5 sends them.

Where each comes from::

    task_received   task-received   judged runnable, waiting for a slot
    before_process  task-started
    after_process   task-succeeded  (a failure waits to say where the message ended)
                    task-revoked    terminated=True: revoked while it ran
    after_retry     task-retried    the next attempt is confirmed
    after_dead_letter               the dead letter is confirmed, by its reason:
                    task-failed     task-failed, retries-exhausted, time-limit, unknown-task
                    task-revoked    expired (expired=True, as Celery reports it)
                    task-rejected   any other (requeue=False: it is in <queue>.dead)
    after_skip      task-revoked    a middleware skipped it (SkipTask)

Each is sent with the others of its 0.1 s window as one message and never waits for the
broker (``dispatcher.py``), so events cost a task a few microseconds and never its time.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from rabbitq import dead_letters
from rabbitq.errors import Terminated
from rabbitq.events.dispatcher import EventDispatcher
from rabbitq.events.event import exception_fields, result_repr
from rabbitq.middleware.middleware import DeadLettered, Middleware, Outcome, TaskContext

# Dead-letter reasons of a message whose task ran (or was named but unknown): Celery reports
# those as failures.
FAILED_REASONS = frozenset(
    {
        dead_letters.REASON_TASK_FAILED,
        dead_letters.REASON_RETRIES_EXHAUSTED,
        dead_letters.REASON_TIME_LIMIT,
        dead_letters.REASON_UNKNOWN_TASK,
    }
)


class TaskEvents(Middleware):
    def __init__(self, dispatcher: EventDispatcher) -> None:
        self.dispatcher = dispatcher
        self.pid = os.getpid()
        self.enabled = True  # remote control's enable_events / disable_events

    def task_received(self, context: TaskContext) -> None:
        if not self.enabled:
            return
        message = context.message
        headers = context.delivery.envelope.headers
        self.dispatcher.send_task_event(
            "task-received",
            uuid=message.id,
            name=message.task,
            args=headers.get("argsrepr") or result_repr(tuple(message.args)),
            kwargs=headers.get("kwargsrepr") or result_repr(message.kwargs),
            root_id=message.root_id,
            parent_id=message.parent_id,
            retries=message.retries,
            eta=_iso(message.eta),
            expires=_iso(message.expires),
            queue=context.delivery.queue,
        )

    def before_process(self, context: TaskContext) -> None:
        if not self.enabled:
            return
        self.dispatcher.send_task_event("task-started", uuid=context.message.id, pid=self.pid)

    def after_process(self, context: TaskContext, outcome: Outcome) -> None:
        if not self.enabled:
            return
        if outcome.exception is None:
            self.dispatcher.send_task_event(
                "task-succeeded",
                uuid=context.message.id,
                result=result_repr(outcome.value),
                runtime=context.runtime,
            )
        elif isinstance(outcome.exception, Terminated):
            self.dispatcher.send_task_event(
                "task-revoked", uuid=context.message.id, terminated=True, signum=None,
                expired=False, reason="terminated",
            )  # fmt: skip

    def after_retry(self, context: TaskContext, exception: BaseException, eta: dt.datetime) -> None:
        if not self.enabled:
            return
        self.dispatcher.send_task_event(
            "task-retried", uuid=context.message.id, **exception_fields(exception)
        )

    def after_dead_letter(self, dead: DeadLettered) -> None:
        if not self.enabled:
            return
        message = dead.message
        envelope = dead.delivery.envelope
        uuid = message.id if message is not None else _id_of(envelope.headers, envelope)
        if uuid is None:
            return  # nothing names it: no reader could place the event
        where: dict[str, Any] = {"reason": dead.reason, "dead_letter_queue": dead.queue}
        name = message.task if message is not None else envelope.headers.get("task")
        if isinstance(name, str):
            where["name"] = name
        if dead.reason in FAILED_REASONS:
            self.dispatcher.send_task_event(
                "task-failed", uuid=uuid, **exception_fields(dead.error), **where
            )
        elif dead.reason == dead_letters.REASON_EXPIRED:
            self.dispatcher.send_task_event(
                "task-revoked", uuid=uuid, terminated=False, signum=None, expired=True, **where
            )
        else:
            self.dispatcher.send_task_event(
                "task-rejected", uuid=uuid, requeue=False, **exception_fields(dead.error), **where
            )

    def after_skip(self, context: TaskContext, reason: str) -> None:
        if not self.enabled:
            return
        self.dispatcher.send_task_event(
            "task-revoked",
            uuid=context.message.id,
            terminated=False,
            signum=None,
            expired=False,
            reason=reason,
        )


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _id_of(headers: dict[str, Any], envelope: Any) -> str | None:
    for candidate in (headers.get("id"), envelope.correlation_id, envelope.message_id):
        if isinstance(candidate, str) and candidate:
            return candidate
    return None
