"""The revocation log in the broker: the stream ``rabbitq.revocations`` (worker side).

A worker process declares the stream if it is missing, reads it from its first entry, and
starts consuming its task queues only once it has caught up, so a task revoked while every
worker was down is still never started. A stream has no end to reach: the reader appends a
marker of its own (an empty entry with the ``rabbitq-marker`` header) and has caught up when
it reads it back. It then goes on following, so a revoke reaches running workers within a
broker round trip. After a reconnect it reads on from the offset after the last entry seen.

The stream's retention (``x-max-age``) is set when it is created, to the revocations' ceiling
(``App(revocations_kept_for=)``); entries older than their ``keep_until`` are skipped
anyway. A stream that already exists is used as it is (its retention is changed with a
policy, not by a worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable

import aio_pika
import aiormq.exceptions
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustChannel, AbstractRobustConnection

from rabbitq.amqp.contract import Publishes
from rabbitq.errors import MessageDecodeError, PublishError
from rabbitq.message import Envelope
from rabbitq.revocations import Revocation, decode_revocation, stream_arguments
from rabbitq.topology import REVOCATION_STREAM

log = logging.getLogger("rabbitq.worker")

MARKER_HEADER = "rabbitq-marker"
PREFETCH = 500  # stream consumers must set a prefetch: entries the broker sends ahead
ACK_EVERY = 100  # while catching up; well under PREFETCH, so the broker never waits for one
CATCH_UP_WARNING = 10.0  # seconds: catching up longer than this is said in the log
MARKER_TIMEOUT = 5.0  # seconds to store the marker before reading until quiet instead
# The broker's words for a node without a replica of the stream (3.10; later versions).
NO_LOCAL_REPLICA = ("does not have a replica on the local node", "does not have a running replica")
QUIET = 1.0  # seconds without an entry after which an unmarked log counts as read


async def declare_revocation_log(
    connection: aio_pika.abc.AbstractConnection, kept_for: float
) -> None:
    """The stream, created with a retention of ``kept_for`` seconds if it does not exist."""
    try:
        async with connection.channel() as channel:
            await channel.declare_queue(REVOCATION_STREAM, passive=True)
        return
    except aiormq.exceptions.ChannelNotFoundEntity:
        pass
    async with connection.channel() as channel:
        await channel.declare_queue(
            REVOCATION_STREAM, durable=True, arguments=stream_arguments(kept_for)
        )


class RevocationFollower:
    """Reads the log from its start, then follows it; calls ``on_revocation`` for each entry
    (on the worker's loop)."""

    def __init__(
        self,
        connection: AbstractRobustConnection,
        publisher: Publishes,
        on_revocation: Callable[[Revocation], object],
    ) -> None:
        self.connection = connection
        self.publisher = publisher
        self.on_revocation = on_revocation
        self._quiet_task: asyncio.Task[None] | None = None
        self.read = 0  # entries read (a worker restart reads them all again)
        self._marker = uuid.uuid4().hex
        self._caught_up = asyncio.Event()
        self._next_offset: int | None = None  # after the last entry seen
        self._unacked = 0
        self._channel: AbstractRobustChannel | None = None

    async def start(self) -> None:
        """Consume the log, and return once everything stored before now has been read."""
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=PREFETCH)
        # aio-pika reopens the channel after a reconnect but does not consume on it again.
        channel.reopen_callbacks.add(self._consume_again)
        self._channel = channel
        if not await self._consume_unless_no_replica(channel):
            return
        await self._append_marker()
        try:
            await asyncio.wait_for(asyncio.shield(self._caught_up.wait()), CATCH_UP_WARNING)
        except TimeoutError:
            log.warning(
                "still reading the revocation log after %.0fs (%d entries so far); tasks are "
                "consumed once it is read",
                CATCH_UP_WARNING,
                self.read,
            )
            await self._caught_up.wait()
        log.info("revocation log read: %d entries", self.read)

    async def _consume(self, channel: AbstractRobustChannel) -> None:
        queue = await channel.get_queue(REVOCATION_STREAM, ensure=False)
        offset: str | int = "first" if self._next_offset is None else self._next_offset
        await queue.consume(self._on_entry, arguments={"x-stream-offset": offset})

    async def _consume_again(self, channel: AbstractRobustChannel | None) -> None:
        self._unacked = 0  # what the closed channel held unacked is no longer counted
        if channel is not None:
            await self._consume_unless_no_replica(channel)

    async def _consume_unless_no_replica(self, channel: AbstractRobustChannel) -> bool:
        """Consume the log; False (and the follower stops, saying so) if the node has no
        replica of it.

        RabbitMQ 3.10 serves a stream only from a node holding a replica of it: a worker on
        (or failed over to) a node of a cluster whose stream lacks one cannot read the log.
        Revokes sent from then on still reach it by remote control
        (``middleware/revocations.py``); those stored before are not applied here. Starting,
        or staying up, matters more than the history."""
        try:
            await self._consume(channel)
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            if not any(words in str(exc) for words in NO_LOCAL_REPLICA):
                raise
            channel.reopen_callbacks.discard(self._consume_again)
            with contextlib.suppress(Exception):
                await channel.close()
            log.warning(
                "the revocation log %r has no replica on the node this worker is connected "
                "to (%s): revocations stored before now are not applied here; new revokes "
                "still are",
                REVOCATION_STREAM,
                exc,
            )
            return False
        return True

    async def _append_marker(self) -> None:
        """Through the publisher's connection: one that publishes while the broker blocks
        publishers (a memory or disk alarm) is not read by the broker at all, and this one
        carries the worker's acks. If the marker cannot be stored now, what the stream holds
        is taken as read once a ``QUIET`` second passes without an entry."""
        marker = Envelope(b"", {MARKER_HEADER: self._marker})
        try:
            await self.publisher.publish(
                REVOCATION_STREAM, marker, exchange="", timeout=MARKER_TIMEOUT
            )
        except PublishError as exc:
            log.warning(
                "could not mark the end of the revocation log (%s); reading it until it has "
                "been quiet for %.0fs",
                exc,
                QUIET,
            )
            self._quiet_task = asyncio.create_task(self._caught_up_when_quiet())

    async def _caught_up_when_quiet(self) -> None:
        seen = -1
        while seen != self.read:
            seen = self.read
            await asyncio.sleep(QUIET)
        self._caught_up.set()

    async def _on_entry(self, message: AbstractIncomingMessage) -> None:
        # Acks are a stream's credit: without them the broker stops after PREFETCH. One
        # ack for many (``multiple``) costs a frame per ACK_EVERY entries instead of each.
        self._unacked += 1
        headers = message.headers or {}
        mark = headers.get(MARKER_HEADER)
        if self._unacked >= ACK_EVERY or mark is not None or self._caught_up.is_set():
            self._unacked = 0
            await message.ack(multiple=True)
        offset = headers.get("x-stream-offset")
        if isinstance(offset, int):
            self._next_offset = offset + 1
        if mark is not None:
            if mark == self._marker:
                self._caught_up.set()
            return  # another reader's marker
        self.read += 1
        try:
            revocation = decode_revocation(message.body)
        except MessageDecodeError as exc:
            log.warning("revocation log entry skipped: %s", exc)
            return
        self.on_revocation(revocation)

    async def close(self) -> None:
        if self._quiet_task is not None:
            self._quiet_task.cancel()
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()
