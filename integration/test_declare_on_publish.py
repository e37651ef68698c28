"""The first ``delay()`` to a queue declares it on a pika connection, within publish_timeout."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pika
import pytest

import rabbitq
from integration.support import drain_queue
from rabbitq.testing.local_broker import free_port
from rabbitq.topology import QueueSpec, Topology

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def silent_listener() -> Iterator[str]:
    """A loopback port that accepts TCP connections and never says a word: the AMQP
    handshake itself must be bounded by the deadline."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield f"amqp://guest:guest@127.0.0.1:{server.getsockname()[1]}/"


@pytest.fixture(params=["nobody-listens", "no-answer"])
def unreachable_broker(request: pytest.FixtureRequest) -> str:
    if request.param == "nobody-listens":
        return f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    return str(request.getfixturevalue("silent_listener"))


def test_first_delay_to_a_new_queue_raises_publish_timeout_when_the_broker_is_unreachable(
    unreachable_broker: str,
) -> None:
    app = rabbitq.App("down", broker=unreachable_broker, publish_timeout=1.0)
    task = app.task(name="declare.down", queue="never-declared")(lambda: None)
    with pytest.raises(rabbitq.PublishTimeoutError, match="never-declared"):
        task.delay()
    app.close()


def test_first_countdown_raises_publish_timeout_when_the_broker_is_unreachable() -> None:
    app = rabbitq.App(
        "down",
        broker=f"amqp://guest:guest@127.0.0.1:{free_port()}/",
        publish_timeout=1.0,
        declare_queues_on_publish=False,
    )
    task = app.task(name="declare.down.later")(lambda: None)
    with pytest.raises(rabbitq.PublishTimeoutError, match="delay levels"):
        task.apply_async(countdown=5)
    app.close()


def test_queue_declared_by_delay_has_the_arguments_of_its_spec(
    broker_url: str, unique_name: str
) -> None:
    spec = QueueSpec(unique_name, type="quorum", max_length=1000)
    app = rabbitq.App("declare", broker=broker_url, routing=Topology(queues=(spec,)))
    task = app.task(name="declare.args", queue=unique_name)(lambda: None)
    task.delay()
    app.close()
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        # A redeclare with other arguments would close the channel with 406.
        channel = connection.channel()
        channel.queue_declare(unique_name, durable=True, arguments=spec.arguments())
        dead = spec.dead_letter_spec()
        channel.queue_declare(dead.name, durable=True, arguments=dead.arguments())
    finally:
        connection.close()
    assert len(drain_queue(broker_url, unique_name)) == 1


def test_delay_to_a_queue_declared_with_other_arguments_publishes_to_it_as_it_is(
    broker_url: str, unique_name: str
) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    connection.channel().queue_declare(
        unique_name, durable=True, arguments={"x-queue-type": "quorum"}
    )
    connection.close()
    # ensure_queue adopts an existing queue whatever its arguments: no conflict, it publishes.
    app = rabbitq.App("declare", broker=broker_url)
    task = app.task(name="declare.adopt", queue=unique_name)(lambda: None)
    task.delay()
    app.close()
    assert len(drain_queue(broker_url, unique_name)) == 1
