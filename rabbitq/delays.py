"""Delayed delivery on binary TTL levels, as pure arithmetic (the NServiceBus design).

Level k (k = LEVELS-1 .. 0) is an exchange ``rabbitq.delay.k`` and a queue of the same name
whose every message waits exactly 2**k milliseconds (a queue-level TTL) and then
dead-letters, routing key unchanged, into ``rabbitq.delay.(k-1)``; level 0 dead-letters into
``rabbitq.delivery``. The routing key spells the delay in binary, highest bit first, then
where the message is going::

    0.0. ... .1.0.1.route.emails.welcome     a delayed publish, routed like an immediate one
    0.0. ... .0.1.1.queue.emails             a retry: back to the one queue it came from

Exchange k sends a message whose bit k is 1 into its queue (so it waits 2**k ms), and one
whose bit k is 0 straight on to exchange k-1. A message therefore waits in exactly the levels
of its set bits, and the waits add up to the delay. Every message in one level queue has the
same TTL, so expiry order is queue order: a one-hour delay never holds back a one-second one.

The key is built afresh from the destination every time (never by prefixing an incoming key),
so prefixes cannot pile up across retries; a destination too long to fit is refused up front.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from rabbitq.errors import ConfigurationError

LEVELS = 36  # 2**36 ms is about 795 days: any delay up to two years
MAX_DELAY_MS = 2**LEVELS - 1
MAX_ROUTING_KEY_BYTES = 255
PREFIX_BYTES = 2 * LEVELS  # "b." per level

EXCHANGE_PREFIX = "rabbitq.delay."
DELIVERY_EXCHANGE = "rabbitq.delivery"
UNROUTABLE_EXCHANGE = "rabbitq.delay.unroutable"
UNROUTABLE_QUEUE = "rabbitq.delay.dead"

ROUTE = "route"
QUEUE = "queue"


def level_name(level: int) -> str:
    """Name of the exchange and of the queue of one level."""
    return f"{EXCHANGE_PREFIX}{level}"


def level_ttl_ms(level: int) -> int:
    return int(2**level)


def bit_word_index(level: int) -> int:
    """Position (0-based word) of level ``level``'s bit in a delay routing key."""
    return LEVELS - 1 - level


def level_pattern(level: int, bit: str) -> str:
    """Topic pattern on exchange ``level`` matching messages whose bit at ``level`` is ``bit``."""
    return ".".join(["*"] * bit_word_index(level) + [bit, "#"])


def delivery_pattern(kind: str, destination: str) -> str:
    """Pattern binding a task queue to ``rabbitq.delivery`` (any delay bits, then ``kind``)."""
    return ".".join(["*"] * LEVELS + [kind, destination])


@dataclass(frozen=True)
class DelayedRoute:
    """Where a delayed message is published: the first level it waits in, and its key."""

    exchange: str
    routing_key: str
    delay_ms: int


def delay_ms_until(eta: dt.datetime, now: dt.datetime) -> int:
    """Milliseconds from ``now`` to ``eta``, rounded up so a task never runs early."""
    return max(0, math.ceil((eta - now).total_seconds() * 1000))


def delayed_route(delay_ms: int, kind: str, destination: str) -> DelayedRoute:
    """The exchange and routing key that deliver to ``destination`` after ``delay_ms``."""
    if kind not in (ROUTE, QUEUE):
        raise ValueError(f"kind must be {ROUTE!r} or {QUEUE!r}")
    if delay_ms <= 0:
        raise ValueError("delay_ms must be positive; publish directly instead")
    if delay_ms > MAX_DELAY_MS:
        raise ConfigurationError(
            f"a delay of {delay_ms / 86_400_000:.0f} days is longer than the longest rabbitq "
            f"supports ({MAX_DELAY_MS / 86_400_000:.0f} days)"
        )
    bits = format(delay_ms, f"0{LEVELS}b")
    routing_key = ".".join([*bits, kind, destination])
    if len(routing_key.encode("utf-8")) > MAX_ROUTING_KEY_BYTES:
        room = MAX_ROUTING_KEY_BYTES - PREFIX_BYTES - len(kind) - 1
        raise ConfigurationError(
            f"destination {destination!r} is too long to delay: a delayed routing key carries "
            f"{PREFIX_BYTES + len(kind) + 1} bytes of delay prefix, leaving {room} bytes for it "
            f"(RabbitMQ caps routing keys at {MAX_ROUTING_KEY_BYTES})"
        )
    # Enter at the highest set bit: the exchanges above it would only pass it along.
    return DelayedRoute(level_name(delay_ms.bit_length() - 1), routing_key, delay_ms)


def decode_delay(routing_key: str) -> tuple[int, str, str] | None:
    """(delay_ms, kind, destination) of a delay routing key, or None if it is not one."""
    words = routing_key.split(".")
    if len(words) < LEVELS + 2 or words[LEVELS] not in (ROUTE, QUEUE):
        return None
    bits = words[:LEVELS]
    if any(bit not in ("0", "1") for bit in bits):
        return None
    return int("".join(bits), 2), words[LEVELS], ".".join(words[LEVELS + 1 :])
