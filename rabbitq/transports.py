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
from rabbitq.errors import ConfigurationError

if TYPE_CHECKING:
    from rabbitq.amqp.declare_once import Settings


class Declarations(Protocol):
    """What publishing needs to exist, declared once (``amqp/declare_once.py``)."""

    def reset(self) -> None: ...

    def queue(self, queue: str | None) -> None: ...

    async def aqueue(self, queue: str | None, publisher: contract.AsyncPublisher) -> None: ...

    def delay_levels(self) -> None: ...

    async def adelay_levels(self, publisher: contract.AsyncPublisher) -> None: ...


class InMemory(Protocol):
    """The in-memory broker's side (``testing/stub_publishers.py`` registers it)."""

    def publisher(self, url: str) -> contract.Publisher: ...

    def async_publisher(self, url: str) -> contract.AsyncPublisher: ...

    def declarations(self, app: Settings) -> Declarations: ...


_in_memory: InMemory | None = None


def register_in_memory(transport: InMemory) -> None:
    """Called by ``rabbitq.testing`` when it loads: the package sits above the app, so the
    app below reaches it through this registration, not an import."""
    global _in_memory
    _in_memory = transport


def _memory(url: str) -> InMemory:
    if _in_memory is None:
        raise ConfigurationError(
            f"{url} is rabbitq.testing's in-memory broker: import rabbitq.testing (or make a "
            "StubBroker) before publishing to it (docs/testing.md)"
        )
    return _in_memory


def publisher_for(url: str, publish_timeout: float) -> contract.Publisher:
    if is_in_memory(url):
        return _memory(url).publisher(url)
    from rabbitq.amqp.blocking import BlockingPublisher

    return BlockingPublisher(url, publish_timeout=publish_timeout)


def async_publisher_for(url: str, publish_timeout: float) -> contract.AsyncPublisher:
    if is_in_memory(url):
        return _memory(url).async_publisher(url)
    from rabbitq.amqp.aio import AsyncPublisher

    return AsyncPublisher(url, publish_timeout=publish_timeout)


def declarations_for(app: Settings) -> Declarations:
    if is_in_memory(app.broker_url):
        return _memory(app.broker_url).declarations(app)
    from rabbitq.amqp.declare_once import DeclareOnce

    return DeclareOnce(app)
