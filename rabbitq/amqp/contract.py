"""What a publisher is, written once: the contract both publishers keep, with one meaning.

``amqp/blocking.py`` (pika, on a thread of its own, for synchronous callers) and ``amqp/aio.py``
(aio-pika, for asyncio callers and the worker) implement it, and so do the in-memory broker's
publishers for users' tests (``testing/stub_publishers.py``, chosen by ``transports.py`` for a
``memory://`` URL). The app publishes through it alone (``app.py``).

* ``publish(routing_key, envelope, exchange=, timeout=)`` returns once the broker confirmed the
  message, and raises ``PublishError`` otherwise: ``UnroutableError`` (no queue bound: the
  publish is ``mandatory``), ``PublishNackedError``, ``PublishTimeoutError`` (no confirm within
  ``timeout``, default the publisher's ``publish_timeout``), or a plain ``PublishError`` for a
  channel error the broker raised for good (403, 404, 406). A publish whose confirm was lost
  with the connection is sent again once it is back, with the same task id.
* ``publish_batch(items, timeout=)`` publishes ``(exchange, routing_key, envelope)`` items with
  their confirms pipelined and returns **one outcome per item, in order**: ``None`` (confirmed)
  or the ``PublishError`` that item met. It raises only when it cannot publish at all within
  ``timeout`` (``PublishTimeoutError`` when not connected in time). ``raise_first`` turns the
  outcomes into the everyday "all or the first error". With ``reconnect=False`` a connection
  error is the item's outcome, ``PublishConnectionError``, at once: the publisher neither waits
  for a reconnect nor sends the item again (``publish_retry.py`` decides what follows).
* ``enable_replies(on_reply)`` consumes this process's exclusive reply queue and returns its
  name once consuming (rpc results).
* ``send_event(routing_key, envelope)`` hands an event (``rabbitq.events``) to be published
  on the ``celeryev`` exchange, on a channel of its own without confirms, and returns at once:
  True when taken, False when the publisher's bounded buffer is full (the broker is not taking
  events fast enough, or the connection is down). Nothing ever waits for an event, and an
  event is never sent twice; one in flight when a connection drops is lost (counted).
* ``close()`` closes the publisher's connection (buffered events get a moment to leave).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from rabbitq.errors import PublishError
from rabbitq.message import Envelope

BatchItem = tuple[str, str, Envelope]  # (exchange, routing key, envelope)
Outcomes = list[PublishError | None]


class Publisher(Protocol):
    """The synchronous side (``BlockingPublisher``)."""

    def publish(
        self,
        routing_key: str,
        envelope: Envelope,
        *,
        exchange: str = ...,
        timeout: float | None = ...,
    ) -> None: ...

    def publish_batch(
        self, items: Sequence[BatchItem], *, timeout: float | None = ..., reconnect: bool = ...
    ) -> Outcomes: ...

    def enable_replies(self, on_reply: Callable[[Envelope], None]) -> str: ...

    def send_event(self, routing_key: str, envelope: Envelope) -> bool: ...

    def close(self, timeout: float = ...) -> None: ...


class Publishes(Protocol):
    """The asyncio ``publish`` alone: what the worker needs to publish a message's successor
    (``worker/republish.py``)."""

    async def publish(
        self,
        routing_key: str,
        envelope: Envelope,
        *,
        exchange: str = ...,
        timeout: float | None = ...,
    ) -> None: ...


class AsyncPublisher(Publishes, Protocol):
    """The asyncio side (``amqp.aio.AsyncPublisher``)."""

    async def publish_batch(
        self, items: Sequence[BatchItem], *, timeout: float | None = ..., reconnect: bool = ...
    ) -> Outcomes: ...

    async def enable_replies(self, on_reply: Callable[[Envelope], None]) -> str: ...

    def send_event(self, routing_key: str, envelope: Envelope) -> bool: ...

    async def close(self) -> None: ...


def raise_first(outcomes: Outcomes) -> None:
    """Raise the first item's error, if any (every item has settled by then)."""
    for error in outcomes:
        if error is not None:
            raise error
