"""Worker middleware: after each confirmed dead letter, write the dead queue's newest record.

``rabbitq status`` and the dashboard show each dead queue's newest reason from it
(``status/newest.py`` explains why it is a queue of its own). The record is written after the
dead letter is confirmed and never holds it up: a record that cannot be written is logged at
debug level and left out.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable

from rabbitq.dead_letters import MAX_MESSAGE_CHARS
from rabbitq.errors import RabbitqError
from rabbitq.message import Envelope
from rabbitq.middleware.middleware import DeadLettered, Middleware
from rabbitq.status.newest import CONTENT_TYPE, encode_newest, newest_queue_name
from rabbitq.status.snapshot import NewestDeadLetter

log = logging.getLogger("rabbitq.worker")

RECORD_TIMEOUT = 5.0  # seconds: a record is a view; it must not hold the delivery's task long

# (routing key on the default exchange, envelope, timeout): the worker's confirmed publish.
Publish = Callable[[str, Envelope, float], Awaitable[None]]


class NewestDeadLetterRecord(Middleware):
    def __init__(self, publish: Publish) -> None:
        self.publish = publish

    async def after_dead_letter(self, dead: DeadLettered) -> None:
        message = dead.message
        headers = dead.delivery.envelope.headers or {}
        error = dead.error
        record = NewestDeadLetter(
            id=message.id if message is not None else str(headers.get("id") or ""),
            task=message.task if message is not None else str(headers.get("task") or ""),
            reason=dead.reason,
            exception=f"{type(error).__name__}: {error}"[:MAX_MESSAGE_CHARS],
            dead_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        )
        envelope = Envelope(encode_newest(record), {}, content_type=CONTENT_TYPE)
        try:
            await self.publish(newest_queue_name(dead.queue), envelope, RECORD_TIMEOUT)
        except (RabbitqError, OSError) as exc:
            log.debug("newest dead letter of %s not recorded: %s", dead.queue, exc)
