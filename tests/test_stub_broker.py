"""The in-memory broker routes, delays and hands out messages by RabbitMQ's rules."""

from __future__ import annotations

import pytest

from rabbitq.delays import QUEUE, ROUTE, UNROUTABLE_QUEUE, delayed_route
from rabbitq.errors import ConfigurationError, PublishError, UnroutableError
from rabbitq.message import Envelope
from rabbitq.testing import StubBroker
from rabbitq.testing.stub_broker import stub_for, topic_matches
from rabbitq.topology import TASK_EXCHANGE, QueueSpec


def envelope(body: bytes = b"x") -> Envelope:
    return Envelope(body=body, headers={})


@pytest.fixture
def broker() -> StubBroker:
    stub = StubBroker()
    stub.declare(QueueSpec("emails"))
    return stub


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [
        ("emails", "emails", True),
        ("emails.#", "emails", True),
        ("emails.#", "emails.welcome.new", True),
        ("emails.*", "emails.welcome", True),
        ("emails.*", "emails.welcome.new", False),
        ("*.welcome", "emails.welcome", True),
        ("emails", "emails.welcome", False),
        ("#", "anything.at.all", True),
    ],
)
def test_topic_patterns_follow_rabbitmq_s_rule(pattern: str, key: str, matches: bool) -> None:
    assert topic_matches(pattern, key) is matches


def test_a_key_under_a_queue_s_name_reaches_it(broker: StubBroker) -> None:
    broker.publish(TASK_EXCHANGE, "emails.welcome", envelope())
    assert len(broker.messages("emails")) == 1


def test_a_key_no_queue_is_bound_to_raises_unroutable(broker: StubBroker) -> None:
    with pytest.raises(UnroutableError):
        broker.publish(TASK_EXCHANGE, "reports.daily", envelope())


def test_a_queue_that_was_never_declared_is_unroutable_by_name(broker: StubBroker) -> None:
    with pytest.raises(UnroutableError):
        broker.publish("", "reports", envelope())


def test_an_exchange_the_broker_does_not_have_is_refused(broker: StubBroker) -> None:
    with pytest.raises(PublishError, match="no exchange 'elsewhere'"):
        broker.publish("elsewhere", "emails", envelope())


def test_a_delayed_message_waits_for_the_clock(broker: StubBroker) -> None:
    route = delayed_route(60_000, QUEUE, "emails")
    broker.publish(route.exchange, route.routing_key, envelope())
    broker.advance(59)
    assert broker.messages("emails") == [] and broker.delayed() == 1
    broker.advance(1)
    assert len(broker.messages("emails")) == 1 and broker.delayed() == 0


def test_a_delayed_message_routed_by_key_goes_where_the_key_matches(broker: StubBroker) -> None:
    route = delayed_route(1000, ROUTE, "emails.welcome")
    broker.publish(route.exchange, route.routing_key, envelope())
    assert broker.advance_to_next_due()
    [message] = broker.messages("emails")
    assert message.body == b"x"


def test_a_delayed_message_nothing_is_bound_for_lands_in_the_delay_dead_queue(
    broker: StubBroker,
) -> None:
    route = delayed_route(1000, ROUTE, "reports.daily")
    broker.publish(route.exchange, route.routing_key, envelope())
    broker.advance(1)
    assert len(broker.messages(UNROUTABLE_QUEUE)) == 1


def test_the_clock_only_moves_forward(broker: StubBroker) -> None:
    with pytest.raises(ValueError, match="forward"):
        broker.advance(-1)


def test_a_message_given_back_is_next_and_redelivered(broker: StubBroker) -> None:
    broker.publish("", "emails", envelope(b"first"))
    broker.publish("", "emails", envelope(b"second"))
    taken = broker.get(["emails"])
    assert taken is not None and broker.unacked() == 1
    broker.give_back(taken.tag)
    again = broker.get(["emails"])
    assert again is not None and again.envelope.body == b"first" and again.redelivered


def test_an_acked_message_is_gone(broker: StubBroker) -> None:
    broker.publish("", "emails", envelope())
    taken = broker.get(["emails"])
    assert taken is not None
    broker.ack(taken.tag)
    assert broker.unacked() == 0 and broker.get(["emails"]) is None


def test_a_reply_queue_hands_each_message_to_its_listener(broker: StubBroker) -> None:
    heard: list[bytes] = []
    broker.listen("replies", lambda message: heard.append(message.body))
    broker.publish("", "replies", envelope(b"result"))
    assert heard == [b"result"]


def test_a_memory_url_names_one_broker_in_the_process_until_it_is_closed() -> None:
    broker = stub_for("memory://shared")
    assert stub_for("memory://shared") is broker
    broker.close()
    assert stub_for("memory://shared") is not broker


def test_purge_drops_ready_and_delayed_messages(broker: StubBroker) -> None:
    broker.publish("", "emails", envelope())
    route = delayed_route(1000, QUEUE, "emails")
    broker.publish(route.exchange, route.routing_key, envelope())
    broker.purge()
    assert broker.messages("emails") == [] and broker.delayed() == 0


def test_what_the_stub_does_not_model_is_refused_naming_it() -> None:
    from rabbitq import App
    from rabbitq.amqp.beat_link import BeatLink
    from rabbitq.amqp.dead_queue import DeadQueue
    from rabbitq.amqp.pika_support import quick_parameters
    from rabbitq.errors import NotSupportedError
    from rabbitq.worker.consumer import Consumer

    stub = StubBroker()
    app = App("stubbed", broker=stub.url)
    refusals = {
        "remote control": lambda: app.control.inspect().active(),
        "revoke": lambda: app.AsyncResult("an-id").revoke(),
        "the beat": lambda: BeatLink(stub.url, identity="beat"),
        "dead-letter queue": lambda: DeadQueue(stub.url, "default.dead"),
        "status": lambda: quick_parameters(stub.url),
        "rabbitq worker": lambda: Consumer(app, ["default"]),
    }
    for what, attempt in refusals.items():
        with pytest.raises(NotSupportedError, match="needs RabbitMQ") as refused:
            attempt()
        assert what in str(refused.value)


def test_a_memory_url_is_known_to_the_app_once_rabbitq_testing_is_loaded() -> None:
    from rabbitq import transports

    assert transports._in_memory is not None  # registered by rabbitq.testing on import
    saved, transports._in_memory = transports._in_memory, None
    try:
        with pytest.raises(ConfigurationError, match=r"import rabbitq\.testing"):
            transports.publisher_for("memory://nowhere", 1.0)
    finally:
        transports._in_memory = saved
