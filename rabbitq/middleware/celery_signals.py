"""Sends Celery's signals (``rabbitq.signals``) from the middleware hooks.

Always installed first, so receivers see a task before any user middleware does. A signal
with no receivers costs one attribute check.
"""

from __future__ import annotations

import datetime as dt
import traceback
from typing import TYPE_CHECKING, Any

from rabbitq import signals
from rabbitq.dead_letters import REASON_EXPIRED, REASON_UNKNOWN_TASK
from rabbitq.errors import Terminated
from rabbitq.message import properties_of
from rabbitq.middleware.middleware import DeadLettered, Middleware, Outcome, TaskContext
from rabbitq.serializers import serializer_for_content_type

if TYPE_CHECKING:
    from rabbitq.prepare import PreparedMessage


def _einfo(exception: BaseException) -> str:
    return "".join(traceback.format_exception(exception))


def _body(message: PreparedMessage) -> Any:
    envelope = message.envelope
    return serializer_for_content_type(envelope.content_type).loads(envelope.body)


class CelerySignals(Middleware):
    def before_publish(self, app: Any, message: PreparedMessage) -> None:
        if signals.before_task_publish:
            envelope = message.envelope
            signals.before_task_publish.send(
                envelope.headers.get("task"),
                body=_body(message),
                exchange=message.exchange,
                routing_key=message.routing_key,
                headers=envelope.headers,
                properties=properties_of(envelope),
                declare=[],
                retry_policy=None,
            )

    def after_publish(self, app: Any, message: PreparedMessage) -> None:
        if signals.after_task_publish:
            envelope = message.envelope
            signals.after_task_publish.send(
                envelope.headers.get("task"),
                body=_body(message),
                exchange=message.exchange,
                routing_key=message.routing_key,
                headers=envelope.headers,
            )

    def process_start(self, app: Any) -> None:
        signals.worker_process_init.send(None)

    def worker_start(self, worker: Any) -> None:
        signals.worker_ready.send(worker)

    def worker_stop(self, worker: Any) -> None:
        signals.worker_shutdown.send(worker)

    def task_received(self, context: TaskContext) -> None:
        if signals.task_received:
            signals.task_received.send(None, request=context.request)

    def before_process(self, context: TaskContext) -> None:
        if signals.task_prerun:
            request = context.request
            signals.task_prerun.send(
                context.task,
                task_id=request.id,
                task=context.task,
                args=request.args,
                kwargs=request.kwargs,
            )

    def after_process(self, context: TaskContext, outcome: Outcome) -> None:
        task, request = context.task, context.request
        exception = outcome.exception
        if exception is None:
            state = "SUCCESS"
            if signals.task_success:
                signals.task_success.send(task, result=outcome.value)
        elif outcome.retried:
            state = "RETRY"  # task_retry is sent once the retry is confirmed
        elif isinstance(exception, Terminated):
            state = "REVOKED"
            if signals.task_revoked:
                signals.task_revoked.send(
                    task, request=request, terminated=True, signum=None, expired=False
                )
        else:
            state = "FAILURE"
            if signals.task_failure:
                signals.task_failure.send(
                    task,
                    task_id=request.id,
                    exception=exception,
                    args=request.args,
                    kwargs=request.kwargs,
                    traceback=exception.__traceback__,
                    einfo=_einfo(exception),
                )
        if signals.task_postrun:
            signals.task_postrun.send(
                task,
                task_id=request.id,
                task=task,
                args=request.args,
                kwargs=request.kwargs,
                retval=outcome.value if exception is None else exception,
                state=state,
            )

    def after_retry(self, context: TaskContext, exception: BaseException, eta: dt.datetime) -> None:
        if signals.task_retry:
            signals.task_retry.send(
                context.task, request=context.request, reason=exception, einfo=_einfo(exception)
            )

    def after_dead_letter(self, dead: DeadLettered) -> None:
        if dead.reason == REASON_UNKNOWN_TASK and signals.task_unknown:
            message = dead.message
            signals.task_unknown.send(
                None,
                name=message.task if message else None,
                id=message.id if message else dead.delivery.envelope.message_id,
                message=dead.delivery.envelope,
                exc=dead.error,
            )
        elif dead.reason == REASON_EXPIRED and signals.task_revoked:
            # Celery reports an expired task as revoked, with expired=True.
            signals.task_revoked.send(
                dead.task, request=dead.message, terminated=False, signum=None, expired=True
            )

    def after_skip(self, context: TaskContext, reason: str) -> None:
        if signals.task_revoked:
            signals.task_revoked.send(
                context.task, request=context.request, terminated=False, signum=None, expired=False
            )
