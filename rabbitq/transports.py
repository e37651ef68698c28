"""Which publishers and declarations a broker URL means: RabbitMQ's, or the in-memory stub's.

``amqp://`` and ``amqps://`` reach RabbitMQ through pika and aio-pika (``amqp/``);
``memory://name`` reaches the ``StubBroker`` of that name in this process
(``testing/stub_broker.py``), for users' tests. Both keep the contract of
``amqp/contract.py``, so the app above them is one code path. Nothing here imports a client
library until a publisher is made: ``import rabbitq`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from rabbitq.amqp import contract
from rabbitq.broker_urls import is_in_memory

if TYPE_CHECKING:
    from rabbitq.amqp.declare_once import Settings


class Declarations(Protocol):
    """What publishing needs to exist, declared once (``amqp/declare_once.py``)."""

    def reset(self) -> None: ...

    def queue(self, queue: str | None) -> None: ...

    async def aqueue(self, queue: str | None, publisher: contract.AsyncPublisher) -> None: ...

    def delay_levels(self) -> None: ...

    async def adelay_levels(self, publisher: contract.AsyncPublisher) -> None: ...


def publisher_for(url: str, publish_timeout: float) -> contract.Publisher:
    if is_in_memory(url):
        from rabbitq.testing.stub_broker import stub_for
        from rabbitq.testing.stub_publishers import StubPublisher

        return StubPublisher(stub_for(url))
    from rabbitq.amqp.blocking import BlockingPublisher

    return BlockingPublisher(url, publish_timeout=publish_timeout)


def async_publisher_for(url: str, publish_timeout: float) -> contract.AsyncPublisher:
    if is_in_memory(url):
        from rabbitq.testing.stub_broker import stub_for
        from rabbitq.testing.stub_publishers import AsyncStubPublisher

        return AsyncStubPublisher(stub_for(url))
    from rabbitq.amqp.aio import AsyncPublisher

    return AsyncPublisher(url, publish_timeout=publish_timeout)


def declarations_for(app: Settings) -> Declarations:
    if is_in_memory(app.broker_url):
        from rabbitq.testing.stub_publishers import StubDeclarations

        return StubDeclarations(app)
    from rabbitq.amqp.declare_once import DeclareOnce

    return DeclareOnce(app)
