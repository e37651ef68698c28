"""AsyncPublisher: what the broker refuses for good fails at once; a lost connection retries.

The publish timeout here is far longer than the test's own timeout (pytest-timeout), so a
refusal that fell into the retry loop would fail the test instead of passing late, and the
error type shows it was not the timeout that ended the call.
"""

from __future__ import annotations

import asyncio
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Iterator

import pika
import pytest

import rabbitq
from integration.support import drain_queue
from rabbitq.amqp.aio import AsyncPublisher
from rabbitq.amqp.management import ManagementClient
from rabbitq.message import Envelope
from rabbitq.testing import LocalBroker

pytestmark = pytest.mark.timeout(120)

LONG_TIMEOUT = 600.0
MAX_MESSAGE_SIZE = 4096


def envelope(body: bytes = b"{}") -> Envelope:
    return Envelope(body=body, headers={}, content_type="application/json")


@pytest.fixture
async def publisher(broker_url: str) -> AsyncIterator[AsyncPublisher]:
    publisher = AsyncPublisher(broker_url, publish_timeout=LONG_TIMEOUT)
    yield publisher
    await publisher.close()


@pytest.fixture
def queue(broker_url: str, unique_name: str) -> Iterator[str]:
    """A queue bound to the default exchange under its own name."""
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    # Durable: RabbitMQ 4.x deprecates transient non-exclusive queues (refused once denied).
    connection.channel().queue_declare(unique_name, durable=True)
    yield unique_name
    connection.channel().queue_delete(unique_name)
    connection.close()


async def lost_connection(publisher: AsyncPublisher) -> None:
    """Returns once the publisher has noticed that its connection is gone."""
    assert publisher.connection is not None
    while publisher.connection.connected.is_set():
        await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
def small_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A broker of our own whose max_message_size is small (the shared one keeps 128 MB).

    Its data lives in a directory we own, so ``stop()`` then ``start()`` is a restart that
    keeps the queues.
    """
    data_dir = tmp_path_factory.mktemp("small-broker")
    with LocalBroker(data_dir=str(data_dir), max_message_size=MAX_MESSAGE_SIZE) as broker:
        yield broker


async def test_publish_to_a_missing_exchange_raises_publish_error_at_once(
    publisher: AsyncPublisher,
) -> None:
    with pytest.raises(rabbitq.PublishError, match="NOT_FOUND") as caught:
        await publisher.publish("anything", envelope(), exchange=f"missing-{uuid.uuid4().hex}")
    assert not isinstance(caught.value, rabbitq.PublishTimeoutError)


async def test_batch_to_a_missing_exchange_gives_each_item_its_publish_error_at_once(
    publisher: AsyncPublisher,
) -> None:
    missing = f"missing-{uuid.uuid4().hex}"
    outcomes = await publisher.publish_batch(
        [(missing, "a", envelope()), (missing, "b", envelope())]
    )
    assert len(outcomes) == 2
    for error in outcomes:
        assert isinstance(error, rabbitq.PublishError) and "NOT_FOUND" in str(error)
        assert not isinstance(error, rabbitq.PublishTimeoutError)


async def test_publish_after_a_refused_one_is_confirmed_on_a_new_channel(
    publisher: AsyncPublisher, broker_url: str, queue: str
) -> None:
    with pytest.raises(rabbitq.PublishError):
        await publisher.publish("x", envelope(), exchange=f"missing-{uuid.uuid4().hex}")
    await publisher.publish(queue, envelope(b'"after"'), exchange="")
    assert [body for _, body in drain_queue(broker_url, queue)] == [b'"after"']


async def test_publish_over_the_broker_max_message_size_raises_publish_error_at_once(
    small_broker: LocalBroker,
) -> None:
    publisher = AsyncPublisher(small_broker.url, publish_timeout=LONG_TIMEOUT)
    try:
        with pytest.raises(rabbitq.PublishError, match="PRECONDITION_FAILED") as caught:
            await publisher.publish("big", envelope(b"x" * (MAX_MESSAGE_SIZE * 2)))
        assert not isinstance(caught.value, rabbitq.PublishTimeoutError)
    finally:
        await publisher.close()


async def test_batch_over_the_broker_max_message_size_gives_its_publish_error_at_once(
    small_broker: LocalBroker,
) -> None:
    publisher = AsyncPublisher(small_broker.url, publish_timeout=LONG_TIMEOUT)
    try:
        (error,) = await publisher.publish_batch(
            [("rabbitq", "big", envelope(b"x" * (MAX_MESSAGE_SIZE * 2)))]
        )
        assert isinstance(error, rabbitq.PublishError) and "PRECONDITION_FAILED" in str(error)
        assert not isinstance(error, rabbitq.PublishTimeoutError)
    finally:
        await publisher.close()


@pytest.fixture
def read_only_url(broker_url: str, management_url: str) -> Iterator[str]:
    """A user who may declare (the publisher declares the rabbitq exchange) but not write."""
    api = ManagementClient(management_url)
    user = f"ro-{uuid.uuid4().hex[:8]}"
    api.call("PUT", f"/api/users/{user}", {"password": "pw", "tags": ""})
    api.call(
        "PUT", f"/api/permissions/%2F/{user}", {"configure": ".*", "write": "^$", "read": ".*"}
    )
    parts = urllib.parse.urlsplit(broker_url)
    yield f"amqp://{user}:pw@{parts.hostname}:{parts.port}/"
    api.call("DELETE", f"/api/users/{user}")


async def test_publish_without_write_permission_raises_publish_error_at_once(
    read_only_url: str,
) -> None:
    publisher = AsyncPublisher(read_only_url, publish_timeout=LONG_TIMEOUT)
    try:
        with pytest.raises(rabbitq.PublishError, match="ACCESS_REFUSED") as caught:
            await publisher.publish("anything", envelope())
        assert not isinstance(caught.value, rabbitq.PublishTimeoutError)
    finally:
        await publisher.close()


async def test_publish_while_the_broker_restarts_is_confirmed_once_it_is_back(
    small_broker: LocalBroker,
) -> None:
    # A lost connection is not a refusal: the publish waits for the robust connection to
    # come back and sends again, within its deadline.
    name = f"restart-{uuid.uuid4().hex[:8]}"
    connection = pika.BlockingConnection(pika.URLParameters(small_broker.url))
    connection.channel().queue_declare(name, durable=True)
    connection.close()
    publisher = AsyncPublisher(small_broker.url, publish_timeout=LONG_TIMEOUT)
    try:
        await publisher.publish(name, envelope(b'"before"'), exchange="")
        small_broker.stop()
        pending = asyncio.create_task(publisher.publish(name, envelope(b'"during"'), exchange=""))
        await lost_connection(publisher)
        # From this thread: the node is tied to the thread that starts it (PR_SET_PDEATHSIG).
        small_broker.start()
        await pending
    finally:
        await publisher.close()
    assert b'"during"' in [body for _, body in drain_queue(small_broker.url, name)]


async def test_batch_while_the_broker_restarts_is_confirmed_once_it_is_back(
    small_broker: LocalBroker,
) -> None:
    name = f"restart-{uuid.uuid4().hex[:8]}"
    connection = pika.BlockingConnection(pika.URLParameters(small_broker.url))
    connection.channel().queue_declare(name, durable=True)
    connection.close()
    publisher = AsyncPublisher(small_broker.url, publish_timeout=LONG_TIMEOUT)
    try:
        await publisher.publish(name, envelope(b'"before"'), exchange="")
        small_broker.stop()
        batch = [("", name, envelope(f'"{i}"'.encode())) for i in range(3)]
        pending = asyncio.create_task(publisher.publish_batch(batch))
        await lost_connection(publisher)
        # From this thread: the node is tied to the thread that starts it (PR_SET_PDEATHSIG).
        small_broker.start()
        assert await pending == [None, None, None]
    finally:
        await publisher.close()
    bodies = [body for _, body in drain_queue(small_broker.url, name)]
    assert {b'"0"', b'"1"', b'"2"'} <= set(bodies)


async def test_batch_while_the_broker_is_down_raises_publish_timeout_at_its_deadline(
    small_broker: LocalBroker,
) -> None:
    publisher = AsyncPublisher(small_broker.url, publish_timeout=LONG_TIMEOUT)
    try:
        await publisher.connect()
        small_broker.stop()
        await lost_connection(publisher)
        with pytest.raises(rabbitq.PublishTimeoutError, match="not connected"):
            await publisher.publish_batch([("rabbitq", "any", envelope())], timeout=1.0)
    finally:
        small_broker.start()
        await publisher.close()
