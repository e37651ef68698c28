"""Settling deliveries in as few frames as possible.

One ack frame per message costs a socket write each, the largest single cost of a no-op
task. Acks requested during one event-loop turn are sent together: the finished deliveries
below the oldest unfinished one go in a single ``basic.ack(multiple=True)``, the rest one by
one. Nothing is acked before its task finished (or its dead letter was confirmed).

Settling is serialised by one lock: two cumulative acks written out of order would make the
broker close the channel ("unknown delivery tag"), and an ack covering a tag that is being
nacked would swallow the requeue.

Delivery tags belong to a channel: after a reconnect the old channel's tags mean nothing, so
pending acks of a closed channel are dropped (the broker redelivers those messages).
"""

from __future__ import annotations

import asyncio
import logging

from aiormq.abc import AbstractChannel

from rabbitq.worker.delivery import Delivery

log = logging.getLogger("rabbitq.worker")


class _ChannelTags:
    __slots__ = ("finished", "unsettled")

    def __init__(self) -> None:
        self.unsettled: set[int] = set()
        self.finished: set[int] = set()


class AckBatcher:
    def __init__(self) -> None:
        self._channels: dict[AbstractChannel, _ChannelTags] = {}
        self._flush_scheduled = False
        self._lock = asyncio.Lock()
        # The event loop keeps only weak references to tasks: an unreferenced flush could be
        # collected before it ran, leaving its acks unsent.
        self._flushes: set[asyncio.Task[None]] = set()

    def delivered(self, delivery: Delivery) -> None:
        self._tags(delivery.channel).unsettled.add(delivery.tag)

    def ack(self, delivery: Delivery) -> None:
        """Ack ``delivery`` soon (within this loop turn), together with others."""
        self._tags(delivery.channel).finished.add(delivery.tag)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._spawn_flush)

    async def nack(self, delivery: Delivery, *, requeue: bool) -> None:
        channel, tag = delivery.channel, delivery.tag
        async with self._lock:
            tags = self._tags(channel)
            tags.finished.discard(tag)
            if not channel.is_closed:
                try:
                    await channel.basic_nack(tag, requeue=requeue)
                except Exception as exc:  # the broker redelivers unsettled messages anyway
                    log.warning("could not nack a delivery (%s)", exc)
            # Only now may a cumulative ack pass over this tag.
            tags.unsettled.discard(tag)

    def _tags(self, channel: AbstractChannel) -> _ChannelTags:
        tags = self._channels.get(channel)
        if tags is None:
            tags = self._channels[channel] = _ChannelTags()
        return tags

    def _spawn_flush(self) -> None:
        self._flush_scheduled = False
        flush = asyncio.get_running_loop().create_task(self.flush())
        self._flushes.add(flush)
        flush.add_done_callback(self._flushes.discard)

    async def flush(self) -> None:
        async with self._lock:
            await self._flush_locked()

    async def _flush_locked(self) -> None:
        for channel, tags in list(self._channels.items()):
            if channel.is_closed:
                del self._channels[channel]
                continue
            if not tags.finished:
                continue
            finished, tags.finished = tags.finished, set()
            tags.unsettled -= finished
            oldest_running = min(tags.unsettled, default=None)
            below = [t for t in finished if oldest_running is None or t < oldest_running]
            above = [t for t in finished if oldest_running is not None and t > oldest_running]
            try:
                if below:
                    await channel.basic_ack(max(below), multiple=len(below) > 1)
                for tag in above:
                    await channel.basic_ack(tag)
            except Exception as exc:
                log.warning("could not ack deliveries (%s); the broker will redeliver them", exc)
