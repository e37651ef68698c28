"""The third implementation of ``amqp/contract.py``: publishers into a ``StubBroker``.

The app picks them for a ``memory://`` broker URL (``rabbitq/transports.py``); everything
above the contract (preparing messages, the canvas, publish retries, middleware) is the
same code that publishes to RabbitMQ. A publish is confirmed the moment the stub routed it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from rabbitq.amqp import contract
from rabbitq.amqp.contract import BatchItem, Outcomes
from rabbitq.errors import PublishError
from rabbitq.message import Envelope
from rabbitq.testing.stub_broker import StubBroker, stub_for
from rabbitq.topology import TASK_EXCHANGE
from rabbitq.transports import register_in_memory

if TYPE_CHECKING:
    from rabbitq.amqp.declare_once import Settings


class StubPublisher:
    """The synchronous side (``contract.Publisher``)."""

    def __init__(self, broker: StubBroker) -> None:
        self.broker = broker
        self._reply_queue: str | None = None

    def publish(
        self,
        routing_key: str,
        envelope: Envelope,
        *,
        exchange: str = TASK_EXCHANGE,
        timeout: float | None = None,
    ) -> None:
        self.broker.publish(exchange, routing_key, envelope)

    def publish_batch(
        self, items: Sequence[BatchItem], *, timeout: float | None = None, reconnect: bool = True
    ) -> Outcomes:
        outcomes: Outcomes = []
        for exchange, routing_key, envelope in items:
            try:
                self.broker.publish(exchange, routing_key, envelope)
                outcomes.append(None)
            except PublishError as exc:
                outcomes.append(exc)
        return outcomes

    def enable_replies(self, on_reply: Callable[[Envelope], None]) -> str:
        if self._reply_queue is None:
            self._reply_queue = f"rabbitq.stub.reply.{uuid.uuid4().hex}"
            self.broker.listen(self._reply_queue, on_reply)
        return self._reply_queue

    def send_event(self, routing_key: str, envelope: Envelope) -> bool:
        self.broker.record_event(routing_key, envelope)
        return True

    def close(self, timeout: float = 0.0) -> None:
        pass


class AsyncStubPublisher:
    """The asyncio side (``contract.AsyncPublisher``): the same, awaited."""

    def __init__(self, broker: StubBroker) -> None:
        self._sync = StubPublisher(broker)

    @property
    def broker(self) -> StubBroker:
        return self._sync.broker

    async def publish(
        self,
        routing_key: str,
        envelope: Envelope,
        *,
        exchange: str = TASK_EXCHANGE,
        timeout: float | None = None,
    ) -> None:
        self._sync.publish(routing_key, envelope, exchange=exchange)

    async def publish_batch(
        self, items: Sequence[BatchItem], *, timeout: float | None = None, reconnect: bool = True
    ) -> Outcomes:
        return self._sync.publish_batch(items)

    async def enable_replies(self, on_reply: Callable[[Envelope], None]) -> str:
        return self._sync.enable_replies(on_reply)

    def send_event(self, routing_key: str, envelope: Envelope) -> bool:
        return self._sync.send_event(routing_key, envelope)

    async def close(self) -> None:
        pass


class StubDeclarations:
    """``amqp/declare_once.py`` for the stub: a task queue exists once something publishes
    to it (when ``declare_queues_on_publish``) or a stub worker consumes it."""

    def __init__(self, app: Settings) -> None:
        self.app = app

    def reset(self) -> None:
        pass  # nothing is remembered: declaring in the stub is idempotent and free

    def queue(self, queue: str | None) -> None:
        if queue is not None and self.app.declare_queues_on_publish:
            stub_for(self.app.broker_url).declare(self.app.topology.queue(queue))

    async def aqueue(self, queue: str | None, publisher: contract.AsyncPublisher) -> None:
        self.queue(queue)

    def delay_levels(self) -> None:
        pass  # the stub's delay levels always exist

    async def adelay_levels(self, publisher: contract.AsyncPublisher) -> None:
        pass


class StubTransport:
    """What ``memory://`` URLs mean to the app (``transports.py``)."""

    def publisher(self, url: str) -> contract.Publisher:
        return StubPublisher(stub_for(url))

    def async_publisher(self, url: str) -> contract.AsyncPublisher:
        return AsyncStubPublisher(stub_for(url))

    def declarations(self, app: Settings) -> StubDeclarations:
        return StubDeclarations(app)


register_in_memory(StubTransport())
