"""The client-side limit on a message's body (issue 21).

RabbitMQ does not tell clients its ``max_message_size``, and a body over it closes the
channel instead of being answered, so the App checks each batch before declaring or sending
anything of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rabbitq.errors import ConfigurationError, MessageTooLargeError

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
