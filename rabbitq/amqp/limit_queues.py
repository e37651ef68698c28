"""The AMQP side of global limits: slots, buckets, waiting queues (``docs/limits.md``).

Every structure is a RabbitMQ queue on the worker's own connection, so whatever a process
holds goes back to the broker when its connection dies (SIGKILL, a network cut: within the
heartbeat window), and nothing is kept in worker memory that another process would need:

* a **slot** of a concurrency limit or of a mutex key is an exclusive queue: declared, it is
  held by this connection; another connection's declare fails (405 RESOURCE_LOCKED); deleted,
  or the connection gone, it is free. A process holds each slot once (exclusive is per
  connection, so the tasks of one process are told apart here, in ``SlotLocks``);
* a **bucket** of a rate limit is a queue of token messages with ``x-max-length = burst``,
  refilled by one process at a time, the holder of the limit's exclusive refiller queue (the
  beat's leadership); a start takes a token and acks it;
* a **waiting queue** holds the tasks that found their limit full, as copies carrying the
  queue they came from (``ORIGIN_HEADER``). A mutex key's waiting queue is deleted by the
  broker when idle (``x-expires``), and a copy that waited longer than ``RETURN_AFTER`` goes
  on to ``rabbitq.limits.returned`` (dead-lettered by TTL), from where a worker sends it
  back to the queue it came from: a key whose last holder died is never stranded.

A failed exclusive declare closes its channel: slots are tried on channels of their own (a
small pool, so a process's tasks do not queue for each other's round trips), each opened
again after a refusal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiormq
import aiormq.exceptions
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection
from aiormq.abc import AbstractChannel, DeliveredMessage
from pamqp import commands as spec

from rabbitq.limits.names import (
    RETURNED_QUEUE,
    bucket_queue,
    refiller_queue,
    slot_queue,
    waiting_queue,
)
from rabbitq.limits.spec import Rate

log = logging.getLogger("rabbitq.limits")

RETURN_AFTER_MS = 60_000  # a copy waiting this long on a mutex key goes to rabbitq.limits.returned
KEY_IDLE_EXPIRES_MS = 600_000  # a mutex key's waiting queue unused this long is deleted
BUCKET_IDLE_EXPIRES_MS = 86_400_000  # a bucket nobody refilled or read for a day is deleted


def waiting_arguments(*, keyed: bool) -> dict[str, Any]:
    """A concurrency limit's or a rate's waiting queue is consumed or swept by every worker
    that knows the limit: it keeps its tasks as long as they wait. A mutex key's may lose its
    last holder unseen: its copies move on after ``RETURN_AFTER_MS``, and the queue goes
    when idle (after its copies have, since the expiry is the longer)."""
    if not keyed:
        return {}
    return {
        "x-message-ttl": RETURN_AFTER_MS,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": RETURNED_QUEUE,
        "x-expires": KEY_IDLE_EXPIRES_MS,
    }


def bucket_arguments(rate: Rate) -> dict[str, Any]:
    return {"x-max-length": rate.burst, "x-expires": BUCKET_IDLE_EXPIRES_MS}


class RefusableChannel:
    """A channel for calls the broker may refuse by closing it (405 on a held exclusive
    queue, 404 on an expired one): opened afresh after a refusal, the old one closed for good
    (aio-pika would reopen it on its own, beside the new one)."""

    def __init__(self, connection: AbstractRobustConnection) -> None:
        self.connection = connection
        self._robust: Any = None
        self._channel: AbstractChannel | None = None

    async def underlay(self) -> AbstractChannel:
        if self._channel is None or self._channel.is_closed:
            if self._robust is not None:
                robust, self._robust = self._robust, None
                try:
                    await robust.close()
                except Exception as exc:  # closed already, or the connection is gone
                    log.debug("closing a refused channel: %s", exc)
            self._robust = await self.connection.channel(publisher_confirms=False)
            self._channel = await self._robust.get_underlay_channel()
        assert self._channel is not None
        return self._channel


class Lease:
    """One slot held by this process: ``scope`` (a limit, or a mutex key) and its number."""

    __slots__ = ("scope", "slot")

    def __init__(self, scope: str, slot: int) -> None:
        self.scope = scope
        self.slot = slot

    def __repr__(self) -> str:
        return f"<Lease {slot_queue(self.scope, self.slot)}>"


class SlotLocks:
    """Taking and giving back slots, and reading and declaring waiting queues.

    The calls go out on a small pool of channels, so that the tasks of one process do not
    wait in line for each other's round trips; a refusal closes only the channel it came on.
    A slot is marked held here before its declare goes out: two tasks of this process never
    declare the same slot (the second declare on one connection would succeed too)."""

    def __init__(self, connection: AbstractRobustConnection, channels: int = 4) -> None:
        self.connection = connection
        self._held: dict[str, set[int]] = {}
        self._idle: asyncio.Queue[RefusableChannel] = asyncio.Queue()
        for _ in range(max(1, channels)):
            self._idle.put_nowait(RefusableChannel(connection))

    def held(self, scope: str) -> int:
        return len(self._held.get(scope, ()))

    @contextlib.asynccontextmanager
    async def _channel(self) -> AsyncIterator[AbstractChannel]:
        refusable = await self._idle.get()
        try:
            yield await refusable.underlay()
        finally:
            self._idle.put_nowait(refusable)

    async def try_take(self, scope: str, slots: int) -> Lease | None:
        """A free slot of ``scope`` (one of ``slots``), now held by this process; None when
        every slot is held (here or elsewhere)."""
        for slot in range(slots):
            # Looked up afresh each time: a set emptied meanwhile is dropped (``_forget``),
            # and a slot marked in a dropped set would be invisible to the other tasks.
            mine = self._held.setdefault(scope, set())
            if slot in mine:
                continue
            mine.add(slot)  # before the declare: no other task of ours tries this slot
            try:
                async with self._channel() as channel:
                    await channel.queue_declare(
                        slot_queue(scope, slot), exclusive=True, auto_delete=False
                    )
            except aiormq.exceptions.ChannelLockedResource:
                self._forget(scope, slot)
                continue  # held by another process
            except BaseException:
                self._forget(scope, slot)
                raise
            return Lease(scope, slot)
        if not self._held.get(scope):
            self._held.pop(scope, None)
        return None

    async def give_back(self, lease: Lease) -> None:
        if lease.slot not in self._held.get(lease.scope, set()):
            return
        try:
            async with self._channel() as channel:
                await channel.queue_delete(slot_queue(lease.scope, lease.slot))
        finally:
            # Deleted, or its connection gone (the broker deleted it): free either way.
            self._forget(lease.scope, lease.slot)

    def _forget(self, scope: str, slot: int) -> None:
        mine = self._held.get(scope, set())
        mine.discard(slot)
        if not mine:
            self._held.pop(scope, None)

    async def declare_waiting(self, scope: str, *, keyed: bool) -> None:
        """Declared (again: a mutex key's expires when idle) before copies are put there."""
        async with self._channel() as channel:
            await channel.queue_declare(
                waiting_queue(scope), durable=True, arguments=waiting_arguments(keyed=keyed)
            )

    async def waiting(self, scope: str, *, keyed: bool) -> int:
        """Copies waiting on ``scope`` now (declaring the queue: an idle key's may be gone)."""
        async with self._channel() as channel:
            ok = await channel.queue_declare(
                waiting_queue(scope), durable=True, arguments=waiting_arguments(keyed=keyed)
            )
            return int(ok.message_count or 0)


class Drain:
    """Takes the oldest waiting copy of a scope for a process that holds one of its slots
    (``basic.get``: unacked, so it goes back to the waiting queue if this process dies)."""

    def __init__(self, connection: AbstractRobustConnection) -> None:
        self._channel = RefusableChannel(connection)

    async def next(self, scope: str) -> tuple[AbstractChannel, DeliveredMessage] | None:
        channel = await self._channel.underlay()
        try:
            message = await channel.basic_get(waiting_queue(scope), no_ack=False)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return None  # an idle key's queue expired: nothing waits there
        if not isinstance(message.delivery, spec.Basic.GetOk):
            return None
        return channel, message


class TokenFeed:
    """A rate's tokens, for the tasks of this process waiting to start: the bucket is
    consumed (prefetch 1) only while one waits, and each token goes to the oldest of them."""

    def __init__(self, connection: AbstractRobustConnection, rate: Rate) -> None:
        self.connection = connection
        self.rate = rate
        self.queue_name = bucket_queue(rate.name, rate.burst)
        self._waiters: list[asyncio.Future[bool]] = []
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self._lock = asyncio.Lock()

    async def declare(self) -> None:
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=1)
        self._queue = await channel.declare_queue(
            self.queue_name, durable=True, arguments=bucket_arguments(self.rate)
        )

    async def take(self) -> bool:
        """Wait for a token and spend it (acked: it does not come back): True; False when
        woken without one (``wake_all``: the worker is stopping)."""
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await self._consume()
            return await waiter
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def wake_all(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(False)

    async def _consume(self) -> None:
        async with self._lock:
            if self._tag is None:
                assert self._queue is not None, "declare() first"
                self._tag = await self._queue.consume(self._on_token)

    async def _on_token(self, message: AbstractIncomingMessage) -> None:
        waiter = next((w for w in self._waiters if not w.done()), None)
        if waiter is None:
            # Nobody here waits any more: the token goes back for another process, and the
            # bucket is left alone until someone does.
            await message.reject(requeue=True)
            await self._stop_consuming()
            return
        await message.ack()
        waiter.set_result(True)

    async def _stop_consuming(self) -> None:
        async with self._lock:
            if self._tag is not None and not any(not w.done() for w in self._waiters):
                tag, self._tag = self._tag, None
                assert self._queue is not None
                await self._queue.cancel(tag)

    async def level(self) -> int:
        assert self._queue is not None
        await self._queue.declare()
        return int(self._queue.declaration_result.message_count or 0)


class Refiller:
    """Puts a rate's tokens into its bucket while this process leads (the exclusive refiller
    queue is ours); looks again every second while another does."""

    FOLLOWER_LOOK = 1.0  # seconds between tries for the lead
    LEAD_CHECK = 0.5  # seconds between checks, while leading, that the lead is still ours
    BACKOFF_MAX = 10.0

    def __init__(
        self,
        connection: AbstractRobustConnection,
        rate: Rate,
        owed: Callable[[], int],
        restart: Callable[[], None],
        tick: float,
    ) -> None:
        self.connection = connection
        self.rate = rate
        self.owed = owed
        self.restart = restart
        self.tick = tick
        self.leading = False
        self._channel = RefusableChannel(connection)

    async def run(self, stopped: Callable[[], bool]) -> None:
        backoff = self.FOLLOWER_LOOK
        bucket = bucket_queue(self.rate.name, self.rate.burst)
        checked = 0.0
        while not stopped():
            try:
                channel = await self._channel.underlay()
                if not self.leading or time.monotonic() >= checked + self.LEAD_CHECK:
                    # Ours, or taken now, or refused: the declare is the check (a connection
                    # lost and regained has lost the lead with it, and is told so here).
                    await channel.queue_declare(refiller_queue(self.rate.name), exclusive=True)
                    checked = time.monotonic()
                if not self.leading:
                    self.leading = True
                    self.restart()
                    log.info("refilling rate limit %s (%s)", self.rate.name, self.rate.rate)
                for _ in range(self.owed()):
                    await channel.basic_publish(b"", exchange="", routing_key=bucket)
                backoff = self.FOLLOWER_LOOK
                await asyncio.sleep(self.tick)
            except aiormq.exceptions.ChannelLockedResource:
                self.leading = False  # the refusal closed the channel: a new one next time
                await asyncio.sleep(self.FOLLOWER_LOOK)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.leading = False
                log.warning("refilling %s failed (%s); trying again in %.0fs",
                            self.rate.name, exc, backoff)  # fmt: skip
                await asyncio.sleep(backoff)
                backoff = min(self.BACKOFF_MAX, backoff * 2)
