"""The newest dead letter of each dead queue, kept where ``rabbitq status`` can read it. Pure.

A dead queue's newest message is at its tail, and AMQP can only take from the head, so
finding it would mean taking every message there. On a quorum queue each take also counts as
a delivery. So each time the worker dead-letters a message into ``<queue>.dead``, it also
writes a short record into ``<queue>.dead.newest``. That is a classic queue with
``x-max-length`` 1, so the broker drops the older record (``drop-head``). Readers take that
one message and hand it back, which costs a classic queue nothing. The record is a view: a
dead letter whose record is lost (the queue deleted, the broker blocked) is still in its dead
queue.
"""

from __future__ import annotations

import json
from typing import Any

from rabbitq.status.snapshot import NewestDeadLetter

NEWEST_SUFFIX = ".newest"
NEWEST_QUEUE_ARGUMENTS: dict[str, Any] = {"x-queue-type": "classic", "x-max-length": 1}
CONTENT_TYPE = "application/json"


def newest_queue_name(dead_queue: str) -> str:
    return dead_queue + NEWEST_SUFFIX


def encode_newest(record: NewestDeadLetter) -> bytes:
    return json.dumps(
        {
            "id": record.id,
            "task": record.task,
            "reason": record.reason,
            "exception": record.exception,
            "dead_at": record.dead_at,
        }
    ).encode()


def decode_newest(body: bytes) -> NewestDeadLetter | None:
    """The record, or None when it is unreadable: it is only a view, never worth an error."""
    try:
        document = json.loads(body)
        return NewestDeadLetter(
            id=str(document["id"]),
            task=str(document["task"]),
            reason=str(document["reason"]),
            exception=str(document.get("exception", "")),
            dead_at=str(document.get("dead_at", "")),
        )
    except (ValueError, KeyError, TypeError):
        return None
