"""Counting and purging named task queues, for ``rabbitq purge``.

Every queue is looked up passively (``queue.declare passive=True``) first: a name that does
not exist is an error naming it, never a queue created empty and reported as "0 purged".
Each lookup gets a channel of its own because a 404 closes the channel it happens on, and
every missing name should be reported at once, not one per run.

``queue.purge`` removes only the messages waiting in the queue: deliveries a worker holds
unacked are not touched (they come back to the queue if the worker dies without acking).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pika
import pika.exceptions
from pika.adapters.utils.connection_workflow import AMQPConnectorException

from rabbitq.amqp.connection_parameters import open_blocking
from rabbitq.errors import BrokerConnectionError, BrokerError, QueueNotFoundError

NOT_FOUND = 404


def _open(url: str) -> pika.BlockingConnection:
    return open_blocking(url, "purging queues")


def _missing(queues: Sequence[str], consequence: str) -> QueueNotFoundError:
    names = ", ".join(repr(queue) for queue in queues)
    return QueueNotFoundError(
        f"no queue named {names} on the broker; {consequence} "
        "(`rabbitq topology show` lists the queues)"
    )


def message_counts(url: str, queues: Sequence[str]) -> dict[str, int]:
    """Messages ready in each queue; ``QueueNotFoundError`` naming every one that is missing."""
    connection = _open(url)
    try:
        counts: dict[str, int] = {}
        missing: list[str] = []
        for queue in queues:
            channel = connection.channel()
            try:
                declared = channel.queue_declare(queue, passive=True)
            except pika.exceptions.ChannelClosedByBroker as exc:
                if exc.reply_code != NOT_FOUND:
                    raise BrokerError(f"cannot look up queue {queue!r}: {exc.reply_text}") from None
                missing.append(queue)
                continue
            counts[queue] = int(declared.method.message_count)
            channel.close()
        if missing:
            raise _missing(missing, "nothing was purged")
        return counts
    except (pika.exceptions.AMQPConnectionError, AMQPConnectorException, OSError) as exc:
        raise BrokerConnectionError(f"lost the broker while looking up queues: {exc!r}") from None
    finally:
        if connection.is_open:
            connection.close()


def purge_queues(url: str, queues: Sequence[str]) -> Iterator[tuple[str, int]]:
    """Purge each queue in turn, yielding ``(queue, messages removed)`` as each is done."""
    connection = _open(url)
    try:
        channel = connection.channel()
        for queue in queues:
            try:
                removed = channel.queue_purge(queue).method.message_count
            except pika.exceptions.ChannelClosedByBroker as exc:
                # Deleted since it was counted: the queues before it stay purged.
                if exc.reply_code == NOT_FOUND:
                    raise _missing([queue], "it was deleted after it was counted") from None
                raise BrokerError(f"cannot purge queue {queue!r}: {exc.reply_text}") from None
            yield queue, int(removed)
    except (pika.exceptions.AMQPConnectionError, AMQPConnectorException, OSError) as exc:
        raise BrokerConnectionError(f"lost the broker while purging: {exc!r}") from None
    finally:
        if connection.is_open:
            connection.close()
