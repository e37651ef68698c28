"""What a worker publishes after a task ran, before it acks the task's message.

On success: the result (to the backend, if any), the chain's next step with the result
prepended, the ``link`` callbacks, and the chord part if the task is a chord member.
On failure: the FAILURE result, the ``link_error`` errbacks (called with the task id; the
error rides in their ``rabbitq_error`` header), and the chord's error part.

Everything goes out with confirms before the ack, so a worker that dies in between leaves the
task to be redelivered (and its followups maybe sent twice: chord parts are deduplicated by
index, chain steps carry fixed task ids), never a workflow silently cut short.
"""

from __future__ import annotations

import logging
import traceback as traceback_module
from dataclasses import replace
from typing import Any

from rabbitq.amqp.contract import AsyncPublisher
from rabbitq.app import App
from rabbitq.canvas import CHORD_OPTION, signature
from rabbitq.chords import CHORD_QUEUE, ChordPart, part_envelope
from rabbitq.compile import compile_signature
from rabbitq.dead_letters import MAX_MESSAGE_CHARS, MAX_TRACEBACK_CHARS, bounded
from rabbitq.message import TaskMessage
from rabbitq.prepare import Context, PreparedMessage, Route
from rabbitq.results import meta as results
from rabbitq.results.handles import AsyncResult, as_tuple
from rabbitq.results.meta import check_encodable
from rabbitq.serializers import Serializer, serializer_named
from rabbitq.task import ERROR_HEADER, Task

log = logging.getLogger("rabbitq.worker")


def can_store(app: App, reply_to: str | None) -> bool:
    """A backend is configured and can reach the caller (rpc needs the reply queue)."""
    backend = app.backend
    return backend is not None and (bool(reply_to) or not backend.uses_reply_queue)


def stores_result(app: App, task: Task | None, message: TaskMessage) -> bool:
    return (
        not message.ignore_result
        and can_store(app, message.reply_to)
        and not app.ignores_result(task)
    )


def check_result(app: App, task: Task, message: TaskMessage, value: Any) -> None:
    """Raise ``ResultEncodeError`` if ``value`` cannot travel where it must go.

    Found here, as the task's own failure, rather than at the caller, and never as a worker
    stuck re-running a message whose follow-ups it cannot send.
    """
    if message.chain or message.callbacks:
        check_encodable(message.id, value, followup_serializer(app, message.serializer))
    if CHORD_OPTION in message.embed_extras:  # parts travel in the app's serializer
        check_encodable(message.id, value, app.serializer)
    if stores_result(app, task, message):
        check_encodable(message.id, value, result_serializer(app, message.serializer))


def error_info(task_id: str, exc: BaseException, traceback: str | None = None) -> dict[str, Any]:
    """The failure an errback is told of (its ``rabbitq_error`` header) and a chord's error
    part carries: bounded like a dead letter's headers, so a long message or traceback cannot
    break the frame (headers travel in one AMQP frame, 128 KiB by default)."""
    described = results.describe_exception(exc)
    message = described["exc_message"]
    text = ", ".join(str(part) for part in message) if message else ""
    trace = traceback if traceback is not None else "".join(traceback_module.format_exception(exc))
    return {
        "task_id": task_id,
        "exc_type": described["exc_type"],
        "exc_module": described["exc_module"],
        "exc_message": bounded(text, MAX_MESSAGE_CHARS),
        "traceback": bounded(trace, MAX_TRACEBACK_CHARS, keep_end=True),
    }


def result_serializer(app: App, sent_in: str | None) -> Serializer:
    """The app's ``result_serializer`` if it names one, else the serializer the task came in:
    a Celery caller that accepts only JSON can then read the result of the JSON task it sent.
    """
    name = app.result_serializer_name or sent_in
    return serializer_named(name) if name else app.result_serializer


def followup_serializer(app: App, sent_in: str | None) -> Serializer:
    """What the next chain step and links are written in (see ``Context.serializer``)."""
    return serializer_named(sent_in) if sent_in else app.serializer


class Followups:
    def __init__(self, app: App, publisher: AsyncPublisher) -> None:
        self.app = app
        self.publisher = publisher

    async def started(self, task: Task, message: TaskMessage) -> None:
        if self.app.track_started and stores_result(self.app, task, message):
            await self._answer(message, results.state_only(message.id, results.STARTED))

    async def retrying(self, task: Task, message: TaskMessage, exc: BaseException) -> None:
        backend = self.app.backend
        if (
            backend is not None
            and not backend.uses_reply_queue
            and stores_result(self.app, task, message)
        ):
            await self._answer(message, results.state_only(message.id, results.RETRY, exc))

    async def succeeded(self, task: Task, message: TaskMessage, value: Any) -> None:
        stores = stores_result(self.app, task, message)
        member = message.embed_extras.get(CHORD_OPTION)
        if not (message.chain or message.callbacks or isinstance(member, dict)):
            if stores:
                await self._answer(message, results.success(message.id, value))
            return  # the common case: nothing follows
        try:
            outgoing = self._next_steps(message, value)
        except Exception:
            if stores:  # the task did succeed, whatever becomes of what follows it
                await self._answer(message, results.success(message.id, value))
            raise
        if stores:
            # What it sends on are its children (``result.children``), as Celery records them.
            children = [as_tuple(AsyncResult(sent.task_id)) for sent in outgoing]
            await self._answer(message, results.success(message.id, value, children))
        if isinstance(member, dict):
            outgoing.append(self._chord_part(member, results=[(member["index"], value)]))
        if outgoing:
            await self.app.apublish_prepared(outgoing, self.publisher)

    async def failed(self, task: Task | None, message: TaskMessage, exc: BaseException) -> None:
        """The task failed for good (not retried): record it and tell whoever waits."""
        trace = "".join(traceback_module.format_exception(exc))
        if stores_result(self.app, task, message):
            await self._answer(message, results.failure(message.id, exc, trace))
        info = error_info(message.id, exc, trace)
        outgoing = self.errback_messages(
            message.errbacks or [], message.id, info, self._context(message)
        )
        member = message.embed_extras.get(CHORD_OPTION)
        if isinstance(member, dict):
            outgoing.append(self._chord_part(member, error={**info, "index": member["index"]}))
        if outgoing:
            await self.app.apublish_prepared(outgoing, self.publisher)

    async def revoked(self, task: Task, message: TaskMessage, exc: BaseException) -> None:
        """Never run, or terminated: REVOKED; a chord it belongs to fails, as in Celery (its
        errbacks are not called: the task did not fail)."""
        if stores_result(self.app, task, message):
            await self._answer(message, results.revoked(message.id, exc))
        member = message.embed_extras.get(CHORD_OPTION)
        if isinstance(member, dict):
            info = error_info(message.id, exc, None)
            part = self._chord_part(member, error={**info, "index": member["index"]})
            await self.app.apublish_prepared([part], self.publisher)

    def _next_steps(self, message: TaskMessage, value: Any) -> list[PreparedMessage]:
        """The chain's next step and the ``link`` callbacks, with ``value`` prepended."""
        outgoing: list[PreparedMessage] = []
        around = self._context(message)
        if message.chain:
            following, rest = message.chain[-1], message.chain[:-1]
            step = replace(around, parent_result=(value,), continuation=list(reversed(rest)))
            outgoing += self._compile(following, step)
        for callback in message.callbacks or []:
            outgoing += self._compile(callback, replace(around, parent_result=(value,)))
        return outgoing

    def errback_messages(
        self, errbacks: list[Any], failed_id: str, info: dict[str, Any], around: Context
    ) -> list[PreparedMessage]:
        """``link_error`` callbacks, called with the failed id; the error in their header."""
        context = replace(around, parent_result=(failed_id,), headers={ERROR_HEADER: info})
        return [message for errback in errbacks for message in self._compile(errback, context)]

    async def store(
        self, meta: results.ResultMeta, reply_to: str | None, sent_in: str | None = None
    ) -> None:
        """Store ``meta``; ``sent_in`` is the serializer its task message came in."""
        backend = self.app.backend
        assert backend is not None
        serializer = result_serializer(self.app, sent_in)
        await backend.store(meta, reply_to, self.publisher, serializer)

    # -- helpers ----------------------------------------------------------------------------

    async def _answer(self, message: TaskMessage, meta: results.ResultMeta) -> None:
        await self.store(meta, message.reply_to, message.serializer)

    def _context(self, message: TaskMessage) -> Context:
        return Context(
            reply_to=message.reply_to,
            parent_id=message.id,
            root_id=message.root_id,
            serializer=message.serializer,
        )

    def _compile(self, data: Any, context: Context) -> list[PreparedMessage]:
        return compile_signature(
            signature(data, self.app), context, self.app.prepare_signature
        ).messages

    def _chord_part(
        self,
        member: dict[str, Any],
        results: list[tuple[int, Any]] | None = None,
        error: dict[str, Any] | None = None,
    ) -> PreparedMessage:
        part = ChordPart(member["id"], member["size"], member["body"], results or [], error)
        envelope = part_envelope(part, self.app.serializer)
        return PreparedMessage(
            envelope.message_id or "", Route(CHORD_QUEUE, None), envelope, "", CHORD_QUEUE
        )
