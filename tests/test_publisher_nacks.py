"""A nacked publish is sent once more on a fresh channel, then the nack is the answer
(``amqp/confirms.py`` says why: after a quorum queue's leader moves, RabbitMQ 3.10 nacks all
an old channel sends there). The publishers run here on stand-ins for pika's and aio-pika's
channel objects, which only record what the publisher asks of them; the cluster drill
(``integration/test_cluster_node_loss.py``) runs the same paths on a real broker.
"""

from __future__ import annotations

from typing import Any

import aiormq.exceptions
import pika.spec
import pytest
from pamqp import commands

from rabbitq.amqp.aio import AsyncPublisher
from rabbitq.amqp.blocking import BlockingPublisher
from rabbitq.amqp.confirms import PublishRequest
from rabbitq.errors import PublishConnectionError, PublishError, PublishNackedError
from rabbitq.message import Envelope

URL = "amqp://guest:guest@127.0.0.1:1/"


class PikaChannel:
    def __init__(self, publisher: BlockingPublisher) -> None:
        self.publisher = publisher
        self.is_open = True
        self.closes = 0

    def close(self) -> None:
        self.closes += 1
        self.is_open = False
        self.publisher._on_channel_closed(self, "closed by the publisher")


class PikaConnection:
    is_open = True

    def __init__(self) -> None:
        self.channels_opened = 0

    def channel(self, on_open_callback: Any) -> None:
        self.channels_opened += 1


def request(label: str, *, reconnect: bool = True) -> PublishRequest:
    made = PublishRequest("rabbitq", "q", Envelope(label.encode(), {}, message_id=label))
    made.reconnect = reconnect
    return made


def nack(tag: int, *, multiple: bool = False) -> Any:
    class Frame:
        method = pika.spec.Basic.Nack(delivery_tag=tag, multiple=multiple)

    return Frame()


@pytest.fixture
def publisher() -> tuple[BlockingPublisher, PikaChannel, PikaConnection]:
    made = BlockingPublisher(URL)
    channel, connection = PikaChannel(made), PikaConnection()
    made._channel, made._connection, made._ready = channel, connection, True  # type: ignore[assignment]
    return made, channel, connection


def test_a_first_nack_puts_the_message_first_in_line_and_renews_the_channel_once(
    publisher: tuple[BlockingPublisher, PikaChannel, PikaConnection],
) -> None:
    blocking, channel, connection = publisher
    first, second = request("a"), request("b")
    blocking._confirms.sent(first)
    blocking._confirms.sent(second)
    blocking._on_confirm(nack(2, multiple=True))
    assert list(blocking._pending) == [first, second]
    assert not first.outcome.done() and not second.outcome.done()
    assert channel.closes == 1 and connection.channels_opened == 1
    assert not blocking._renewing


def test_a_renewal_sends_again_what_was_in_flight_but_not_what_its_caller_retries_itself(
    publisher: tuple[BlockingPublisher, PikaChannel, PikaConnection],
) -> None:
    blocking, _channel, _connection = publisher
    nacked, waiting, deciding = request("a"), request("b"), request("c", reconnect=False)
    for each in (nacked, waiting, deciding):
        blocking._confirms.sent(each)
    blocking._on_confirm(nack(1))
    assert list(blocking._pending) == [waiting, nacked]
    assert isinstance(deciding.outcome.error, PublishConnectionError)


def test_a_message_nacked_on_the_fresh_channel_too_raises_publish_nacked_error(
    publisher: tuple[BlockingPublisher, PikaChannel, PikaConnection],
) -> None:
    blocking, _channel, _connection = publisher
    once = request("a")
    blocking._confirms.sent(once)
    blocking._on_confirm(nack(1))
    blocking._channel = PikaChannel(blocking)  # the fresh channel; its tags start at 1
    blocking._confirms.reset()
    blocking._confirms.sent(blocking._pending.popleft())
    blocking._on_confirm(nack(1))
    assert isinstance(once.outcome.error, PublishNackedError)


def test_a_nack_while_the_publisher_closes_is_the_answer(
    publisher: tuple[BlockingPublisher, PikaChannel, PikaConnection],
) -> None:
    blocking, channel, _connection = publisher
    closing = request("a")
    blocking._confirms.sent(closing)
    blocking._closing = True
    blocking._on_confirm(nack(1))
    assert isinstance(closing.outcome.error, PublishNackedError)
    assert channel.closes == 0 and not blocking._pending


def test_a_connection_lost_during_a_renewal_leaves_no_renewal_pending(
    publisher: tuple[BlockingPublisher, PikaChannel, PikaConnection],
) -> None:
    blocking, _channel, connection = publisher

    class Loop:
        def stop(self) -> None:
            pass

    connection.is_open = False  # the close callback finds the connection gone
    connection.ioloop = Loop()  # type: ignore[attr-defined]
    blocking._confirms.sent(request("a"))
    blocking._on_confirm(nack(1))
    blocking._on_connection_closed(connection, "lost")  # type: ignore[arg-type]
    assert not blocking._renewing and len(blocking._pending) == 1


# -- the asyncio publisher ----------------------------------------------------------------------


class AioExchange:
    def __init__(self, channel: AioChannel) -> None:
        self.channel = channel

    async def publish(self, message: Any, routing_key: str, mandatory: bool) -> None:
        self.channel.connection.publishes += 1
        if self.channel.connection.nacks:
            self.channel.connection.nacks -= 1
            raise aiormq.exceptions.DeliveryError(None, commands.Basic.Nack(delivery_tag=1))


class AioChannel:
    def __init__(self, connection: AioConnection) -> None:
        self.connection = connection
        self.default_exchange = AioExchange(self)
        self.closed = False

    async def declare_exchange(self, *args: Any, **kwargs: Any) -> AioExchange:
        return AioExchange(self)

    async def get_exchange(self, *args: Any, **kwargs: Any) -> AioExchange:
        return AioExchange(self)

    async def close(self) -> None:
        self.closed = True


class AioConnection:
    is_closed = False

    def __init__(self, nacks: int) -> None:
        self.nacks = nacks
        self.publishes = 0
        self.channels: list[AioChannel] = []

    async def ready(self) -> None:
        pass

    async def channel(self, **kwargs: Any) -> AioChannel:
        self.channels.append(AioChannel(self))
        return self.channels[-1]


async def aio_publisher(nacks: int) -> tuple[AsyncPublisher, AioConnection]:
    publisher = AsyncPublisher(URL, publish_timeout=5)
    connection = AioConnection(nacks)
    publisher._connection = connection  # type: ignore[assignment]
    await publisher.connect()
    return publisher, connection


async def test_the_asyncio_publisher_sends_a_nacked_message_once_more_on_a_new_channel() -> None:
    publisher, connection = await aio_publisher(nacks=1)
    await publisher.publish("q", Envelope(b"{}", {}))
    assert connection.publishes == 2
    assert len(connection.channels) == 2 and connection.channels[0].closed


async def test_the_asyncio_publisher_raises_a_second_nack() -> None:
    publisher, connection = await aio_publisher(nacks=2)
    with pytest.raises(PublishNackedError):
        await publisher.publish("q", Envelope(b"{}", {}))
    assert connection.publishes == 2


async def test_renewing_a_channel_already_renewed_closes_nothing() -> None:
    publisher, connection = await aio_publisher(nacks=0)
    stale = AioChannel(connection)
    await publisher._renew_channel(stale)  # type: ignore[arg-type]
    assert not stale.closed and publisher._channel is connection.channels[0]


def test_publish_error_is_what_a_renewal_while_closing_gives_the_unconfirmed(
    publisher: tuple[BlockingPublisher, PikaChannel, PikaConnection],
) -> None:
    blocking, channel, _connection = publisher
    held = request("a")
    blocking._confirms.sent(held)
    blocking._renewing, blocking._closing = True, True
    blocking._on_channel_closed(channel, "closed")
    assert isinstance(held.outcome.error, PublishError)
