"""Reading events from the broker: the history stream, or the live ``celeryev`` exchange.

The history (``rabbitq.events``, a RabbitMQ stream) is read from an offset: a point in time
(``x-stream-offset`` takes a timestamp, and seeks to the chunk holding it) or its beginning.
A stream has no end to reach, so a reader that is not following appends a marker of its own
(a confirmed, empty message with the ``rabbitq-marker`` header) and reads until it meets
it: everything stored before the marker has been read, and nothing is waited for after it.
Markers, ours and other readers', are never shown.

Without a history, ``--follow`` reads the exchange live through an exclusive queue of its
own, as ``celery events`` does; nothing from before it started can be had that way.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator

import aio_pika
import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractConnection

from rabbitq.amqp.aio_connection import connect_once
from rabbitq.errors import EventHistoryMissingError
from rabbitq.events.event import Event, decode_events
from rabbitq.topology import EVENT_EXCHANGE, EVENT_HISTORY_QUEUE

MARKER_HEADER = "rabbitq-marker"
PREFETCH = 1000  # stream consumers need a prefetch: the broker sends that many ahead


async def read_events(url: str, *, since: dt.datetime | None, follow: bool) -> AsyncIterator[Event]:
    """The events stored since ``since`` (all, when None), then, with ``follow``, new ones as
    they come; without a history, ``follow`` reads live events only."""
    connection = await connect_once(url, what="reading events")
    try:
        if await _has_history(connection):
            async for event in _read_history(connection, since, follow):
                yield event
        elif follow:
            async for event in _read_live(connection):
                yield event
        else:
            raise EventHistoryMissingError(
                f"this broker keeps no event history (no stream {EVENT_HISTORY_QUEUE}): add "
                "events.history to the routing file and run `rabbitq topology apply` or start "
                "a worker with it (docs/events.md); --follow shows live events without it"
            )
    finally:
        await connection.close()


async def _has_history(connection: AbstractConnection) -> bool:
    try:
        async with connection.channel() as channel:
            await channel.declare_queue(EVENT_HISTORY_QUEUE, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return False
    return True


async def _read_history(
    connection: AbstractConnection, since: dt.datetime | None, follow: bool
) -> AsyncIterator[Event]:
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=PREFETCH)
    marker = None if follow else await _append_marker(connection)
    queue = await channel.get_queue(EVENT_HISTORY_QUEUE, ensure=False)
    offset: object = since if since is not None else "first"
    async with queue.iterator(arguments={"x-stream-offset": offset}) as messages:
        async for message in messages:
            # Acks are a stream's credit: without them the broker stops after PREFETCH.
            await message.ack()
            mark = (message.headers or {}).get(MARKER_HEADER)
            if mark is not None:
                if mark == marker:
                    return
                continue
            for event in decode_events(message.body):
                yield event


async def _append_marker(connection: AbstractConnection) -> str:
    marker = uuid.uuid4().hex
    channel: AbstractChannel = await connection.channel(publisher_confirms=True)
    try:
        await channel.default_exchange.publish(
            aio_pika.Message(b"", headers={MARKER_HEADER: marker}), routing_key=EVENT_HISTORY_QUEUE
        )
    finally:
        await channel.close()
    return marker


async def _read_live(connection: AbstractConnection) -> AsyncIterator[Event]:
    channel = await connection.channel()
    await channel.declare_exchange(EVENT_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(EVENT_EXCHANGE, routing_key="#")
    async with queue.iterator(no_ack=True) as messages:
        async for message in messages:
            for event in decode_events(message.body):
                yield event
