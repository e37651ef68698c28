"""Who runs the blocking publisher's I/O loop for a publish: a caller alone runs it itself; a
caller that finds it taken hands its message over, waking the loop once however many wait.
The publisher runs on stand-ins for pika's connection, loop and channel, which record what
the publisher asks of them (``integration/test_publishing.py`` runs it on a broker)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pika.spec
import pytest

from rabbitq.amqp.blocking import BlockingPublisher
from rabbitq.message import Envelope

URL = "amqp://guest:guest@127.0.0.1:1/"


def ack(tag: int) -> Any:
    class Frame:
        method = pika.spec.Basic.Ack(delivery_tag=tag)

    return Frame()


class Loop:
    """pika's IOLoop as the publisher uses it; ``poll`` runs ``on_poll`` (the broker)."""

    def __init__(self) -> None:
        self.handed: list[Callable[[], None]] = []
        self.polled_by: set[str] = set()
        self.on_poll: Callable[[], None] = lambda: None

    def add_callback_threadsafe(self, callback: Callable[[], None]) -> None:
        self.handed.append(callback)

    def call_later(self, _delay: float, _callback: Callable[[], None]) -> object:
        return object()

    def remove_timeout(self, _handle: object) -> None:
        pass

    def poll(self) -> None:
        self.polled_by.add(threading.current_thread().name)
        self.on_poll()

    def process_timeouts(self) -> None:
        pass

    def stop(self) -> None:
        pass


class Connection:
    is_open = True

    def __init__(self, publisher: BlockingPublisher) -> None:
        self.publisher = publisher
        self.ioloop = Loop()
        self.closes = 0

    def close(self) -> None:
        self.closes += 1


class Channel:
    is_open = True

    def __init__(self) -> None:
        self.published: list[bytes] = []

    def basic_publish(self, _exchange: str, _key: str, body: bytes, *_: Any, **__: Any) -> None:
        self.published.append(body)


@pytest.fixture
def publisher() -> Iterator[tuple[BlockingPublisher, Connection, Channel]]:
    made = BlockingPublisher(URL)
    connection, channel = Connection(made), Channel()
    made._connection, made._channel, made._ready = connection, channel, True  # type: ignore[assignment]
    made._thread = threading.current_thread()  # "alive": no real I/O thread is started
    yield made, connection, channel
    made._thread = None  # nothing for close() at exit to join


def item(body: bytes) -> tuple[str, str, Envelope]:
    return ("rabbitq", "q", Envelope(body, {}, message_id=body.decode()))


def test_a_caller_publishing_alone_runs_the_loop_on_its_own_thread(
    publisher: tuple[BlockingPublisher, Connection, Channel],
) -> None:
    blocking, connection, channel = publisher
    connection.ioloop.on_poll = lambda: blocking._on_confirm(ack(1))
    assert blocking.publish_batch([item(b"a")], timeout=5) == [None]
    assert channel.published == [b"a"]
    assert connection.ioloop.polled_by == {threading.current_thread().name}
    assert connection.ioloop.handed == []  # no wake-up of the I/O thread


def test_a_caller_finding_the_loop_taken_hands_its_message_to_the_loop(
    publisher: tuple[BlockingPublisher, Connection, Channel],
) -> None:
    blocking, connection, channel = publisher
    blocking._baton.take_turn(urgent=False)  # the I/O thread runs the loop
    blocking._submit([item(b"a")], timeout=5)
    assert channel.published == [] and len(connection.ioloop.handed) == 1


def test_messages_queued_before_the_flush_ran_wake_the_loop_once(
    publisher: tuple[BlockingPublisher, Connection, Channel],
) -> None:
    blocking, connection, channel = publisher
    blocking._submit([item(b"a")])
    blocking._submit([item(b"b")])
    assert len(connection.ioloop.handed) == 1
    connection.ioloop.handed.pop()()  # the loop runs the flush
    assert channel.published == [b"a", b"b"]
    blocking._submit([item(b"c")])
    assert len(connection.ioloop.handed) == 1


def test_an_interruption_while_a_caller_runs_the_loop_drops_the_connection_and_keeps_the_message(
    publisher: tuple[BlockingPublisher, Connection, Channel],
) -> None:
    blocking, connection, _channel = publisher

    def interrupted() -> None:
        raise KeyboardInterrupt

    connection.ioloop.on_poll = interrupted
    with pytest.raises(KeyboardInterrupt):
        blocking.publish_batch([item(b"a")], timeout=5)
    assert connection.closes == 1 and not blocking._ready
    assert len(blocking._confirms) == 0  # no later ack can be matched to a wrong tag
    assert [r.envelope.body for r in blocking._pending] == [b"a"]  # sent on the next one
    assert blocking._baton.holder is None
