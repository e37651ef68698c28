"""The worker process's remote-control mailbox: its node queue on ``celery.pidbox``.

Each process consumes ``<nodename>.celery.pidbox`` (exclusive: it dies with the connection,
and aio-pika declares it again, with its binding and consumer, after a reconnect), answers
what ``control/commands.py`` answers, and sends the reply to the asker's queue, confirmed,
on the publisher's connection (a reply whose asker is gone is unroutable and dropped: the
asker has timed out). A node name already in use by another live worker is refused by the
broker (405 RESOURCE_LOCKED): this process then runs without a mailbox and says why."""

from __future__ import annotations

import logging
from typing import Any

import aio_pika
import aiormq.exceptions
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustChannel, AbstractRobustConnection

from rabbitq.amqp.contract import Publishes
from rabbitq.control import commands, pidbox
from rabbitq.errors import MessageError
from rabbitq.message import envelope_from_properties
from rabbitq.topology import CONTROL_EXCHANGE, CONTROL_REPLY_EXCHANGE

log = logging.getLogger("rabbitq.worker")

REPLY_TIMEOUT = 5.0  # seconds: the asker waits a second or so; a later reply is no use


class Mailbox:
    def __init__(
        self, node: commands.Node, connection: AbstractRobustConnection, publisher: Publishes
    ) -> None:
        self.node = node
        self.connection = connection
        # Replies go out on the publisher's connection: one that publishes while the broker
        # blocks publishers is not read at all, and the consumer's carries the task acks.
        self.publisher = publisher
        self.answered = 0
        self._channel: AbstractRobustChannel | None = None

    async def start(self) -> bool:
        """Consume the node's queue; False (and an error in the log) if the name is taken."""
        name = pidbox.node_queue(self.node.nodename)
        channel = await self.connection.channel()
        try:
            requests = await channel.declare_exchange(
                CONTROL_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=False, auto_delete=False
            )
            await channel.declare_exchange(
                CONTROL_REPLY_EXCHANGE,
                aio_pika.ExchangeType.DIRECT,
                durable=False,
                auto_delete=False,
            )
            queue = await channel.declare_queue(
                name,
                durable=False,
                exclusive=True,
                auto_delete=True,
                arguments=pidbox.QUEUE_ARGUMENTS,
            )
        except aiormq.exceptions.ChannelLockedResource:
            log.error(
                "node name %s is in use by another running worker: this process does not "
                "answer remote control (celery inspect, rabbitq inspect). Give each worker its "
                "own name with -n",
                self.node.nodename,
            )
            return False
        await queue.bind(requests, routing_key="")
        await queue.consume(self._on_request, no_ack=True)
        self._channel = channel
        return True

    async def _on_request(self, message: AbstractIncomingMessage) -> None:
        try:
            request = pidbox.decode_request(envelope_from_properties(message, message.body))
        except MessageError as exc:
            log.warning("remote-control request ignored: %s", exc)
            return
        if not request.is_for(self.node.nodename):
            return
        value = await commands.dispatch(self.node, request.method, request.arguments)
        if request.wants_reply:
            await self._reply(request, value)

    async def _reply(self, request: pidbox.Request, value: Any) -> None:
        assert request.reply_routing_key is not None
        try:
            envelope = pidbox.encode_reply(request, self.node.nodename, value, self.node.clock)
        except (TypeError, ValueError) as exc:  # a value the serializer cannot carry
            envelope = pidbox.encode_reply(
                request, self.node.nodename, {"error": f"reply not encodable: {exc}"}
            )
        try:
            await self.publisher.publish(
                request.reply_routing_key,
                envelope,
                exchange=request.reply_exchange or CONTROL_REPLY_EXCHANGE,
                timeout=REPLY_TIMEOUT,
            )
            self.answered += 1
        except Exception as exc:  # the asker is told nothing either way: it times out
            log.info("remote-control reply to %s not sent: %s", request.method, exc)

    async def close(self) -> None:
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()
