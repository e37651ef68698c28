"""The first ``delay()`` to a queue declares it on a pika connection, within publish_timeout."""

from __future__ import annotations

import pika
import pytest

import rabbitq
from integration.support import drain_queue
from rabbitq.testing.local_broker import free_port
from rabbitq.topology import QueueSpec, Topology

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize(
    "broker",
    [
        pytest.param(f"amqp://guest:guest@127.0.0.1:{free_port()}/", id="nobody-listens"),
        # A routable address nothing answers on: the connect itself must be bounded.
        pytest.param("amqp://guest:guest@10.255.255.1:5672/", id="no-answer"),
    ],
)
def test_first_delay_to_a_new_queue_raises_publish_timeout_when_the_broker_is_unreachable(
    broker: str,
) -> None:
    app = rabbitq.App("down", broker=broker, publish_timeout=1.0)
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
