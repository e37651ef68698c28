"""One message as the worker received it: where it came from and how to settle it."""

from __future__ import annotations

from dataclasses import dataclass

from aio_pika.abc import AbstractIncomingMessage
from aiormq.abc import AbstractChannel

from rabbitq.delays import ROUTE, decode_delay
from rabbitq.message import Envelope


@dataclass(frozen=True)
class Delivery:
    queue: str
    # Captured on arrival: after a reconnect the message's own channel reference raises, and
    # its tag must never be acked on the new channel.
    channel: AbstractChannel
    tag: int
    envelope: Envelope
    exchange: str
    routing_key: str
    redelivered: bool

    @classmethod
    def of(cls, queue: str, message: AbstractIncomingMessage) -> Delivery:
        assert message.delivery_tag is not None  # manual acks: always tagged
        return cls(
            queue=queue,
            channel=message.channel,
            tag=message.delivery_tag,
            envelope=Envelope(
                body=message.body,
                headers=dict(message.headers or {}),
                content_type=message.content_type,
                content_encoding=message.content_encoding,
                message_id=message.message_id,
                correlation_id=message.correlation_id,
                reply_to=message.reply_to,
                priority=message.priority,
                delivery_mode=int(message.delivery_mode or 2),
            ),
            exchange=message.exchange or "",
            routing_key=message.routing_key or "",
            redelivered=bool(message.redelivered),
        )

    @property
    def original_routing_key(self) -> str:
        """The key it was published with: a delayed one is unwrapped to its destination.

        A delayed message arrives with the exchange it last left (any level, or
        ``rabbitq.delivery``), so the key itself says whether it came through the levels.
        """
        delayed = decode_delay(self.routing_key)
        if delayed is None:
            return self.routing_key
        _delay, kind, destination = delayed
        return destination if kind == ROUTE else self.queue
