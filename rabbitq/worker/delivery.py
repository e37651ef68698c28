"""One message as the worker received it: where it came from and how to settle it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from aiormq.abc import AbstractChannel, DeliveredMessage
from pamqp import commands as spec

from rabbitq.delays import ROUTE, decode_delay
from rabbitq.limits.names import ORIGIN_HEADER, holds_copies
from rabbitq.message import Envelope, envelope_from_properties


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
    # time.monotonic() on arrival: the broker's consumer_timeout counts from delivery, so a
    # message waiting for a slot spends the same window as its run (``timeouts.py``).
    arrived: float = field(default_factory=time.monotonic)
    # The queue it was taken from when that is not ``queue``: a limit's waiting queue, or
    # ``rabbitq.limits.returned``, holding a copy of a task of ``queue`` (``limits/``).
    via: str = ""

    @classmethod
    def of(cls, queue: str, message: DeliveredMessage) -> Delivery:
        """A delivery from a consumer (``basic.deliver``) or a ``basic.get``."""
        deliver = message.delivery
        assert isinstance(deliver, spec.Basic.Deliver | spec.Basic.GetOk)
        assert deliver.delivery_tag is not None
        envelope = envelope_from_properties(message.header.properties, message.body)
        via = ""
        if holds_copies(queue):
            # A parked copy: to the pipeline it is a task of the queue it came from, where
            # its retries, dead letters and hand-backs go.
            origin = envelope.headers.get(ORIGIN_HEADER)
            if isinstance(origin, str) and origin:
                queue, via = origin, queue
        return cls(
            queue=queue,
            channel=message.channel,
            tag=deliver.delivery_tag,
            envelope=envelope,
            exchange=deliver.exchange or "",
            routing_key=deliver.routing_key or "",
            redelivered=bool(deliver.redelivered),
            via=via,
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
