"""The rpc backend: results travel back to the caller's reply queue as AMQP messages.

A reply has Celery's rpc shape (``reply_to`` + ``correlation_id`` = task id; body with
``task_id``, ``status``, ``result``, ``traceback``, ``children``), published to the default
exchange. A caller that has gone has no queue any more: the broker returns the reply and the
worker drops it, harmlessly.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from rabbitq.errors import UnroutableError
from rabbitq.message import Envelope
from rabbitq.results.backend import ResultBackend
from rabbitq.results.meta import PENDING, ResultMeta, decode_meta, encode_meta
from rabbitq.results.replies import ReplyBox
from rabbitq.serializers import Serializer, serializer_for_content_type

if TYPE_CHECKING:
    from rabbitq.amqp.contract import AsyncPublisher

log = logging.getLogger("rabbitq.results")


class RpcBackend(ResultBackend):
    uses_reply_queue = True

    def __init__(self, url: str, serializer: Serializer, expires: float | None) -> None:
        super().__init__(url, serializer, expires)
        self.box = ReplyBox()

    async def store(
        self,
        meta: ResultMeta,
        reply_to: str | None,
        publisher: AsyncPublisher,
        serializer: Serializer | None = None,
    ) -> None:
        if not reply_to:
            return  # the caller did not ask for a reply (or used another backend)
        envelope = reply_envelope(meta, serializer or self.serializer)
        try:
            await publisher.publish(reply_to, envelope, exchange="")
        except UnroutableError:
            log.debug("caller of task %s has gone; its result is dropped", meta.task_id)

    def state(self, task_id: str) -> ResultMeta:
        return self.box.get(task_id) or ResultMeta(task_id, PENDING)

    def wait(self, task_ids: list[str], timeout: float | None) -> dict[str, ResultMeta]:
        return self.box.wait(task_ids, timeout)

    async def await_ready(self, task_id: str, timeout: float | None) -> ResultMeta | None:
        return await self.box.await_ready(task_id, timeout)

    def forget(self, task_id: str) -> None:
        self.box.forget(task_id)

    def accept_reply(self, envelope: Envelope) -> None:
        """Called by a reply consumer for each message on its reply queue."""
        try:
            document = serializer_for_content_type(envelope.content_type).loads(envelope.body)
            meta = decode_meta(document, envelope.correlation_id)
        except Exception as exc:  # a stray message must not kill the consumer
            log.warning("ignored an unreadable reply (%s: %s)", type(exc).__name__, exc)
            return
        self.box.put(meta)


def reply_envelope(meta: ResultMeta, serializer: Serializer) -> Envelope:
    return Envelope(
        body=encode_meta(meta, serializer),
        headers={},
        content_type=serializer.content_type,
        content_encoding=serializer.content_encoding,
        correlation_id=meta.task_id,
        delivery_mode=1,  # the reply queue is transient; so is its content
    )
