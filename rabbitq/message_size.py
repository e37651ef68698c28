"""The limits on a message's body (issue 21), on both sides.

Publishing: RabbitMQ does not tell clients its ``max_message_size``, and a body over it
closes the channel instead of being answered, so the App checks each batch before declaring
or sending anything of it.

Receiving: the worker refuses a body over the same limit, or one nested deeper than
``nesting.MAX_NESTING``, before decoding it, so a producer that does not check (Celery, a
script) cannot make a worker build it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rabbitq.errors import (
    BodyTooDeepError,
    BodyTooLargeError,
    ConfigurationError,
    MessageError,
    MessageTooLargeError,
)
from rabbitq.message import Envelope
from rabbitq.nesting import MAX_NESTING, json_depth, msgpack_depth
from rabbitq.serializers import JSON, MSGPACK, known_serializer

if TYPE_CHECKING:
    from rabbitq.prepare import PreparedMessage

# RabbitMQ 4's own default; 3.x allowed 128 MiB, but such bodies stall the queue behind them.
DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024


def check_max_message_size(limit: int) -> int:
    """The App's setting, refused at once unless a positive int (bytes)."""
    if type(limit) is not int or limit < 1:
        raise ConfigurationError(f"max_message_size must be a positive number of bytes: {limit!r}")
    return limit


def refuse_oversized(messages: Sequence[PreparedMessage], limit: int) -> None:
    """Raise for the first body over ``limit`` bytes, before any of the batch is sent."""
    for message in messages:
        size = len(message.envelope.body)
        if size > limit:
            task_name = message.envelope.headers.get("task")
            raise MessageTooLargeError(message.task_id, str(task_name), size, limit)


def incoming_refusal(envelope: Envelope, limit: int) -> MessageError | None:
    """Why the worker must not decode ``envelope``: a body over ``limit`` bytes, or one that
    nests deeper than ``nesting.MAX_NESTING``. None for every other body, including ones of
    a content type the decoder will refuse (it says why)."""
    size = len(envelope.body)
    if size > limit:
        return BodyTooLargeError(
            f"body of {size} bytes is over this worker's max_message_size of {limit}"
        )
    serializer = known_serializer(envelope.content_type)
    if serializer is MSGPACK:
        depth = msgpack_depth(envelope.body)
    elif serializer is JSON:
        depth = json_depth(envelope.body)
    else:
        return None
    if depth > MAX_NESTING:
        return BodyTooDeepError(
            f"body nests lists and maps more than {MAX_NESTING} deep; it was not decoded"
        )
    return None
