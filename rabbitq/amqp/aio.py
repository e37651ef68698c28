"""Publishing from asyncio code (and from the worker) on aio-pika.

One robust connection and one confirming channel per event loop. Concurrent ``publish``
calls pipeline their confirms on that channel. A publish interrupted by a lost connection is
retried on the restored channel until the caller's deadline (at-least-once: the broker may
have stored the first copy). A batch published with ``reconnect=False`` instead fails with
``PublishConnectionError`` at the connection error (at once while reconnecting), never sent
again here: ``publish_retry.py`` decides.

Events (``send_event``) go on a second channel of the same connection, without confirms and
without waiting: a bounded buffer (``event_buffer.py``) and one sending task per publisher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import aio_pika
import aio_pika.exceptions
import aiormq.abc
import aiormq.exceptions
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustConnection,
)
from pamqp import commands as spec

from rabbitq.amqp.aio_connection import connect_robust
from rabbitq.amqp.contract import BatchItem, Outcomes
from rabbitq.amqp.event_buffer import EventBuffer
from rabbitq.errors import (
    BrokerConnectionError,
    PublishConnectionError,
    PublishError,
    PublishNackedError,
    PublishTimeoutError,
    UnroutableError,
)
from rabbitq.message import Envelope, envelope_from_properties, properties_of
from rabbitq.topology import EVENT_EXCHANGE, TASK_EXCHANGE

log = logging.getLogger("rabbitq.publisher")

BATCH_WINDOW = 1000
EVENT_RETRY_PAUSE = 1.0  # seconds before the event sender tries a lost channel again
CLOSE_EVENTS_WITHIN = 2.0  # seconds close() gives buffered events (a worker-offline) to leave


def to_aio_message(envelope: Envelope) -> aio_pika.Message:
    return aio_pika.Message(
        body=envelope.body,
        headers=envelope.headers,
        content_type=envelope.content_type,
        content_encoding=envelope.content_encoding,
        delivery_mode=aio_pika.DeliveryMode(envelope.delivery_mode),
        priority=envelope.priority,
        correlation_id=envelope.correlation_id,
        reply_to=envelope.reply_to,
        message_id=envelope.message_id,
        expiration=int(envelope.expiration) / 1000 if envelope.expiration else None,
    )


def to_amqp_properties(envelope: Envelope) -> spec.Basic.Properties:
    return spec.Basic.Properties(**properties_of(envelope))


# The broker closes the channel with these codes for what no retry can fix: 403 access
# refused, 404 (an exchange that does not exist), 406 (a message over its max_message_size).
# Any other close (the connection went, the channel was closed with it) is transient.
PERMANENT_CHANNEL_ERRORS = (
    aiormq.exceptions.ChannelAccessRefused,
    aiormq.exceptions.ChannelNotFoundEntity,
    aiormq.exceptions.ChannelPreconditionFailed,
)


def broker_refusal(error: BaseException, routing_key: str, exchange: str) -> PublishError | None:
    """What a failed confirm means for the caller: unroutable, nacked, refused by a channel
    error, or (None) a lost connection, after which the message must be sent again."""
    if isinstance(error, aiormq.exceptions.PublishError):
        return UnroutableError(routing_key, exchange)
    if isinstance(error, aiormq.exceptions.DeliveryError):
        return PublishNackedError(f"the broker nacked the message: {error}")
    if isinstance(error, PERMANENT_CHANNEL_ERRORS):
        # Same words as BlockingPublisher's, so callers see one message for one cause.
        return PublishError(f"the broker closed the publishing channel: {error}")
    return None


class AsyncPublisher:
    """Confirmed, mandatory publishing for one event loop."""

    def __init__(self, url: str, *, publish_timeout: float = 30.0) -> None:
        self.url = url
        self.publish_timeout = publish_timeout
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}
        self._connect_lock = asyncio.Lock()
        self._reply_queue: str | None = None
        self._on_reply: Callable[[Envelope], None] | None = None
        self.events = EventBuffer()
        self._events_waiting = asyncio.Event()
        self._event_sender: asyncio.Task[None] | None = None
        self._event_channel: AbstractChannel | None = None
        self._events_in_flight = 0

    @property
    def connection(self) -> AbstractRobustConnection | None:
        return self._connection

    async def connect(self) -> AbstractChannel:
        async with self._connect_lock:
            if self._channel is not None and not (
                self._connection is None or self._connection.is_closed
            ):
                # The robust connection reopens this channel (its exchange and the reply
                # consumer with it) after a reconnect or a channel error. Another channel
                # opened meanwhile would fail on the dead transport, or consume replies twice.
                await self._connection.ready()
                return self._channel
            if self._connection is None or self._connection.is_closed:
                self._connection = await connect_robust(
                    self.url,
                    name=f"rabbitq-async-publisher-{os.getpid()}",
                    what="publishing",
                )
            channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
            self._exchanges = {
                TASK_EXCHANGE: await channel.declare_exchange(
                    TASK_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
                ),
                "": channel.default_exchange,
            }
            self._channel = channel
            if self._reply_queue is not None:
                await self._consume_replies(channel)
            return channel

    async def enable_replies(self, on_reply: Callable[[Envelope], None]) -> str:
        """Consume this loop's reply queue (the rpc result backend); returns its name.

        The robust channel declares it again, with the same name, after a reconnect.
        """
        if self._reply_queue is None:
            channel = await self.connect()
            async with self._connect_lock:
                if self._reply_queue is None:
                    self._reply_queue = f"rabbitq.reply.{uuid.uuid4().hex}"
                    self._on_reply = on_reply
                    await self._consume_replies(channel)
        return self._reply_queue

    async def _consume_replies(self, channel: AbstractChannel) -> None:
        assert self._reply_queue is not None
        queue = await channel.declare_queue(self._reply_queue, exclusive=True, auto_delete=True)

        async def deliver(message: AbstractIncomingMessage) -> None:
            if self._on_reply is not None:
                self._on_reply(envelope_from_properties(message, message.body))

        await queue.consume(deliver, no_ack=True)

    async def publish(
        self,
        routing_key: str,
        envelope: Envelope,
        *,
        exchange: str = TASK_EXCHANGE,
        timeout: float | None = None,
    ) -> None:
        """Publish and return once confirmed; raise ``PublishError`` otherwise."""
        limit = timeout if timeout is not None else self.publish_timeout
        try:
            await asyncio.wait_for(
                self._publish_until_confirmed(routing_key, envelope, exchange), limit
            )
        except TimeoutError:
            raise PublishTimeoutError(
                f"no publisher confirm for routing key {routing_key!r} within {limit:g}s "
                "(broker unreachable, or the connection is blocked)"
            ) from None

    async def publish_batch(
        self, items: Sequence[BatchItem], *, timeout: float | None = None, reconnect: bool = True
    ) -> Outcomes:
        """``(exchange, routing_key, envelope)`` each, confirms pipelined on one channel; one
        outcome per item (``contract.py``).

        The fast path writes every message on aiormq's channel and then awaits the confirms
        together (aio-pika's per-message objects cost more than the broker round trip at
        group sizes); if the connection drops meanwhile, the unconfirmed ones go the slow,
        reconnecting way.
        """
        limit = timeout if timeout is not None else self.publish_timeout
        deadline = asyncio.get_running_loop().time() + limit
        if not reconnect and (not_sent := await self._not_connected()) is not None:
            return [not_sent] * len(items)
        try:
            # While reconnecting, this waits for the connection: within the deadline too.
            channel = await asyncio.wait_for(self.connect(), limit)
            underlay = await channel.get_underlay_channel()
        except TimeoutError:
            raise PublishTimeoutError(
                f"not connected to the broker within {limit:g}s for a batch of {len(items)}"
            ) from None
        outcomes: list[Any] = []
        # Windows of confirms in flight, as the raw baseline: a group of 100,000 does not
        # create 100,000 coroutines at once.
        for start in range(0, len(items), BATCH_WINDOW):
            window = items[start : start + BATCH_WINDOW]
            confirms = [
                underlay.basic_publish(
                    envelope.body,
                    exchange=exchange,
                    routing_key=routing_key,
                    properties=to_amqp_properties(envelope),
                    mandatory=True,
                )
                for exchange, routing_key, envelope in window
            ]
            remaining = max(0.0, deadline - asyncio.get_running_loop().time())
            try:
                outcomes += await asyncio.wait_for(
                    asyncio.gather(*confirms, return_exceptions=True), remaining
                )
            except TimeoutError:
                timed_out = PublishTimeoutError(
                    f"no publisher confirms for a batch of {len(items)} within {limit:g}s "
                    "(broker unreachable, or the connection is blocked)"
                )
                # Whatever was not confirmed by now is this item's error.
                outcomes += [timed_out] * (len(items) - len(outcomes))
                break
        results: Outcomes = []
        for (exchange, routing_key, envelope), outcome in zip(items, outcomes, strict=True):
            if not isinstance(outcome, BaseException):  # the broker's ack frame
                results.append(None)
                continue
            if isinstance(outcome, PublishError):  # a timeout marked above
                results.append(outcome)
                continue
            refusal = broker_refusal(outcome, routing_key, exchange)
            if isinstance(refusal, PublishNackedError):
                # Sent again alone, on a fresh channel, as ``publish`` does with a nack; a
                # second nack is the answer.
                await self._renew_channel(channel)
                remaining = max(0.0, deadline - asyncio.get_running_loop().time())
                try:
                    await asyncio.wait_for(
                        self._publish_until_confirmed(
                            routing_key, envelope, exchange, nacked_before=True
                        ),
                        remaining,
                    )
                    refusal = None
                except TimeoutError:
                    refusal = PublishTimeoutError(
                        f"no publisher confirm for routing key {routing_key!r} within "
                        f"{limit:g}s (broker unreachable, or the connection is blocked)"
                    )
                except PublishError as exc:
                    refusal = exc
            elif refusal is None and not reconnect:
                refusal = PublishConnectionError(
                    "the connection was lost before the confirm; the broker may or may not "
                    f"have the message ({type(outcome).__name__}: {outcome})"
                )
            elif refusal is None:
                # The connection went away and the confirm with it: sent again once it is
                # back (the same message, so the same task id), within the deadline.
                remaining = max(0.0, deadline - asyncio.get_running_loop().time())
                try:
                    await self.publish(routing_key, envelope, exchange=exchange, timeout=remaining)
                except PublishError as exc:
                    refusal = exc
            results.append(refusal)
        return results

    async def _not_connected(self) -> PublishConnectionError | None:
        """Why a publish that must not wait for a reconnect cannot be sent now, if so."""
        connection = self._connection
        if connection is not None and not connection.is_closed:
            if connection.connected.is_set():
                return None
            return PublishConnectionError("not connected to the broker (reconnecting): not sent")
        try:
            await self.connect()  # the first connection: one attempt
        except BrokerConnectionError as exc:
            return PublishConnectionError(f"{exc}: not sent")
        return None

    async def _publish_until_confirmed(
        self,
        routing_key: str,
        envelope: Envelope,
        exchange_name: str,
        *,
        nacked_before: bool = False,
    ) -> None:
        message = to_aio_message(envelope)
        nacked = nacked_before
        while True:
            channel = await self.connect()
            exchange = await self._exchange(exchange_name)
            try:
                await exchange.publish(message, routing_key=routing_key, mandatory=True)
                return
            except (
                aiormq.exceptions.PublishError,  # returned: a DeliveryError, but not a nack
                *PERMANENT_CHANNEL_ERRORS,
            ) as exc:
                refusal = broker_refusal(exc, routing_key, exchange_name)
                assert refusal is not None
                raise refusal from None
            except aiormq.exceptions.DeliveryError as exc:
                if nacked:
                    refusal = broker_refusal(exc, routing_key, exchange_name)
                    assert refusal is not None
                    raise refusal from None
                # Once more on a fresh channel (``confirms.ConfirmTracker.confirmed``: after
                # a quorum queue's leader moves, an old channel may nack all it sends there).
                nacked = True
                await self._renew_channel(channel)
            except (
                aiormq.exceptions.ConnectionClosed,
                aiormq.exceptions.ChannelInvalidStateError,
                aio_pika.exceptions.ChannelClosed,
                ConnectionError,
            ) as exc:
                # The confirm is lost with the connection: send again once restored.
                log.warning("publish interrupted (%s); retrying after reconnect", exc)
                await asyncio.sleep(0.2)

    async def _renew_channel(self, stale: AbstractChannel) -> None:
        """Drop ``stale`` for a new channel (opened by the next ``connect``). The reply
        consumer moves with it: a reply sent in between is lost, as on any reconnect."""
        async with self._connect_lock:
            if self._channel is not stale:
                return  # renewed already, by a publish nacked alongside this one
            self._channel = None
            self._exchanges = {}
        with contextlib.suppress(Exception):
            await asyncio.shield(stale.close())

    async def _exchange(self, name: str) -> AbstractExchange:
        exchange = self._exchanges.get(name)
        if exchange is None:
            assert self._channel is not None
            exchange = await self._channel.get_exchange(name, ensure=False)
            self._exchanges[name] = exchange
        return exchange

    # -- events: fire and forget ------------------------------------------------------------

    def send_event(self, routing_key: str, envelope: Envelope) -> bool:
        """Hand an event to the sender (``contract.py``); False when its buffer is full.

        Call it from this publisher's event loop; it never waits."""
        if not self.events.offer(routing_key, envelope):
            return False
        self._events_waiting.set()
        if self._event_sender is None or self._event_sender.done():
            self._event_sender = asyncio.get_running_loop().create_task(self._send_events())
        return True

    async def _send_events(self) -> None:
        while True:
            await self._events_waiting.wait()
            try:
                underlay = await self._event_underlay()
            except Exception as exc:  # not connected: the buffer keeps them, bounded
                log.debug("events wait for the connection: %s: %s", type(exc).__name__, exc)
                await asyncio.sleep(EVENT_RETRY_PAUSE)
                continue
            self._events_waiting.clear()
            items = self.events.take()
            self._events_in_flight = len(items)
            for index, (routing_key, envelope) in enumerate(items):
                try:
                    # No confirm: written to the socket and forgotten. While the broker has
                    # blocked the connection this waits, and the buffer fills behind it.
                    await underlay.basic_publish(
                        envelope.body,
                        exchange=EVENT_EXCHANGE,
                        routing_key=routing_key,
                        properties=to_amqp_properties(envelope),
                    )
                except Exception as exc:
                    self.events.lost += len(items) - index
                    log.warning(
                        "%d event message(s) lost with the event channel (%s: %s)",
                        len(items) - index,
                        type(exc).__name__,
                        exc,
                    )
                    self._events_waiting.set()  # whatever came meanwhile goes next time
                    await asyncio.sleep(EVENT_RETRY_PAUSE)
                    break
            self._events_in_flight = 0

    async def _event_underlay(self) -> aiormq.abc.AbstractChannel:
        if self._connection is None or self._connection.is_closed:
            # Events ride a connection a publish or the worker opened; they never open one.
            # A first connect_robust cancelled mid-attempt (by close() giving up on the
            # events) keeps reconnecting in the background and asyncio.run waits for it
            # forever: a worker told to stop while the broker was down never exited.
            raise BrokerConnectionError("no connection yet")
        if self._event_channel is None or self._event_channel.is_closed:
            channel = await self._connection.channel(publisher_confirms=False)
            # Durable topic, as Celery declares it: either side may come first.
            await channel.declare_exchange(
                EVENT_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
            )
            self._event_channel = channel
        else:
            await self._connection.ready()  # reconnecting: the robust channel comes back
        return await self._event_channel.get_underlay_channel()

    async def _drain_events(self, within: float) -> None:
        sender = self._event_sender
        if sender is None or sender.done():
            return
        deadline = asyncio.get_running_loop().time() + within
        while (len(self.events) or self._events_in_flight) and (
            asyncio.get_running_loop().time() < deadline
        ):
            await asyncio.sleep(0.01)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender

    async def close(self) -> None:
        await self._drain_events(CLOSE_EVENTS_WITHIN)
        if self._connection is not None:
            await self._connection.close()
        self._connection = None
        self._channel = None
        self._event_channel = None
