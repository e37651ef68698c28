"""The beat's one connection: leadership lease, state, and confirmed publishing (pika, blocking).

Leadership is an exclusive queue: RabbitMQ lets one connection declare it and deletes it the
moment that connection dies (socket closed on SIGKILL, missed heartbeats on network loss,
every connection on a broker restart). The leader publishes its ticks and writes its state on
that same connection, so a beat that lost its lease cannot publish any more either: there is
no window in which two beats both send.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from rabbitq.amqp.blocking import to_pika_properties
from rabbitq.amqp.connection_parameters import open_blocking
from rabbitq.amqp.declare import home_node_down
from rabbitq.amqp.pika_support import CONNECTION_ERRORS as PIKA_CONNECTION_ERRORS
from rabbitq.amqp.pika_support import open_quickly
from rabbitq.beat.state import (
    CONTENT_TYPE,
    BeatState,
    dead_queue_name,
    decode_state,
    encode_state,
    leader_queue_name,
    newest,
    state_queue_name,
)
from rabbitq.broker_urls import refuse_in_memory
from rabbitq.errors import (
    BrokerConnectionError,
    MessageDecodeError,
    PublishNackedError,
    TopologyConflictError,
    UnroutableError,
)
from rabbitq.message import Envelope
from rabbitq.topology import TASK_EXCHANGE, UNREACHABLE_DELIVERY_LIMIT

log = logging.getLogger("rabbitq.beat")

RESOURCE_LOCKED = 405
PRECONDITION_FAILED = 406
INTERNAL_ERROR = 541
STATUS_ATTEMPTS = 5  # a state queue just declared may not answer yet (``_queue_starting``)
STATUS_RETRY_PAUSE = 0.2
# Only the newest state matters. Readers requeue the copy they peek at, which a quorum queue
# counts as a delivery: the unreachable limit keeps it from ever dropping the state.
STATE_QUEUE_ARGUMENTS: dict[str, Any] = {"x-max-length": 1, "x-overflow": "drop-head"}
STATE_READ_PATIENCE = 1.0  # seconds a new leader waits for a state copy a reader may hold
STATE_READ_RETRIES = 5
NOT_FOUND = 404
# Errors that mean "this connection is gone": the beat drops leadership and reconnects.
CONNECTION_ERRORS = PIKA_CONNECTION_ERRORS


class BeatLink:
    """One beat process's connection to the broker."""

    def __init__(self, url: str, *, identity: str, group: str = "", heartbeat: int = 2) -> None:
        self.group = group
        self.leader_queue = leader_queue_name(group)
        self.state_queue = state_queue_name(group)
        self.dead_queue = dead_queue_name(group)
        refuse_in_memory(url, "the beat")
        # The heartbeat bounds how long a leader cut off by the network keeps its lease: the
        # broker drops the connection after two missed beats. Shorter than the 60 s default
        # because a false alarm costs little (a failover, at most one tick sent twice). Of
        # several broker URLs the first that answers is used; a beat that loses its node
        # reconnects through them all again (``beat/runner.py``).
        self.connection = open_blocking(
            url,
            "the beat",
            heartbeat=heartbeat,
            client_properties={"connection_name": f"rabbitq-beat {identity}"},
        )
        try:
            # Quorum queues, so the beat's state and dead letters outlive a node; one declared
            # classic by an earlier version is kept as it is (``_declare_durable``).
            self._declare_durable(self.state_queue, STATE_QUEUE_ARGUMENTS)
            self._declare_durable(self.dead_queue, {})
            self.channel: BlockingChannel = self.connection.channel()
            self.channel.confirm_delivery()
            self.channel.exchange_declare(TASK_EXCHANGE, "topic", durable=True)
        except CONNECTION_ERRORS as exc:
            self.close()
            raise BrokerConnectionError(f"beat cannot connect to the broker: {exc}") from exc

    def _declare_durable(self, queue: str, arguments: dict[str, Any]) -> None:
        """``queue`` as a quorum queue, or as the classic one an earlier version declared
        (a 406 on the quorum form), or left alone on a node that is down (a 404 saying so:
        it comes back with its node). Each attempt on a channel of its own: a refusal
        closes it."""
        limit = UNREACHABLE_DELIVERY_LIMIT
        quorum = {**arguments, "x-queue-type": "quorum", "x-delivery-limit": limit}
        for candidate in (quorum, arguments):
            channel = self.connection.channel()
            try:
                channel.queue_declare(queue, durable=True, arguments=candidate)
            except pika.exceptions.ChannelClosedByBroker as exc:
                if exc.reply_code == PRECONDITION_FAILED:
                    continue
                if exc.reply_code == NOT_FOUND and home_node_down(exc):
                    log.warning("beat queue %r is on a node that is down: %s", queue, exc)
                    return
                raise
            channel.close()
            return
        raise TopologyConflictError(
            f"beat queue {queue!r} exists with arguments rabbitq does not expect; delete it "
            "(it holds only the beat's last state or its dead letters) and start the beat again"
        )

    def try_to_lead(self) -> bool:
        """Take the lease if nobody holds it. Another holder closes our probe channel (405)."""
        probe = self.connection.channel()
        try:
            probe.queue_declare(self.leader_queue, exclusive=True)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == RESOURCE_LOCKED:
                return False
            raise
        # The channel may close; the queue lives as long as the connection.
        probe.close()
        return True

    def read_state(self) -> BeatState | None:
        """The newest state copy; older copies are removed, the newest is left in place.

        A status reader (``rabbitq status``, the dashboard, ``beat status``) holds the copies
        for the few milliseconds it looks at them, and a queue that looks empty then would
        make a new leader start from now and skip the ticks of its failover: an empty look
        is tried again for up to ``STATE_READ_PATIENCE`` seconds."""
        held = _get_states(self.channel, self.state_queue)
        for _ in range(STATE_READ_RETRIES):
            if held:
                break
            self.sleep(STATE_READ_PATIENCE / STATE_READ_RETRIES)
            held = _get_states(self.channel, self.state_queue)
        best = newest(state for _, state in held)
        for tag, state in held:
            if state is best:
                self.channel.basic_nack(tag, requeue=True)
            else:
                self.channel.basic_ack(tag)
        return best

    def write_state(self, state: BeatState) -> None:
        properties = pika.BasicProperties(content_type=CONTENT_TYPE, delivery_mode=2)
        self._publish_confirmed("", self.state_queue, encode_state(state), properties)

    def publish(self, exchange: str, routing_key: str, envelope: Envelope) -> None:
        """Publish and wait for the confirm; raises ``UnroutableError`` or
        ``PublishNackedError`` if the broker refuses, a connection error if the link died."""
        try:
            self._publish_confirmed(
                exchange, routing_key, envelope.body, to_pika_properties(envelope)
            )
        except pika.exceptions.UnroutableError:
            raise UnroutableError(routing_key, exchange) from None
        except pika.exceptions.NackError:
            raise PublishNackedError("the broker nacked the tick") from None

    def _publish_confirmed(
        self, exchange: str, routing_key: str, body: bytes, properties: pika.BasicProperties
    ) -> None:
        """Publish and wait for the confirm; a nack is sent once more on a fresh channel
        (after a quorum queue's leader moves, an old channel may nack all it sends there:
        ``amqp/confirms.py``), and a second nack raises pika's ``NackError``."""
        try:
            self.channel.basic_publish(exchange, routing_key, body, properties, mandatory=True)
            return
        except pika.exceptions.NackError:
            pass
        with contextlib.suppress(*CONNECTION_ERRORS):
            self.channel.close()
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()
        self.channel.basic_publish(exchange, routing_key, body, properties, mandatory=True)

    def dead_letter(self, envelope: Envelope) -> None:
        self.publish("", self.dead_queue, envelope)

    def sleep(self, seconds: float) -> None:
        """Wait, answering heartbeats; raises a connection error if the link dies."""
        self.connection.process_data_events(time_limit=max(0.0, seconds))

    def close(self) -> None:
        connection = getattr(self, "connection", None)
        if connection is not None and connection.is_open:
            with contextlib.suppress(*CONNECTION_ERRORS):
                connection.close()


@dataclass
class BeatStatus:
    led: bool  # someone holds the lease right now
    state: BeatState | None


def read_status(url: str, group: str = "") -> BeatStatus:
    """Whether a beat leads, and the last state it wrote; changes nothing."""
    for attempt in range(STATUS_ATTEMPTS):
        connection = open_quickly(url, "reading the beat")
        try:
            return BeatStatus(_lease_held(connection, group), _peek_state(connection, group))
        except CONNECTION_ERRORS as exc:
            if _queue_starting(exc) and attempt + 1 < STATUS_ATTEMPTS:
                time.sleep(STATUS_RETRY_PAUSE)
                continue
            raise BrokerConnectionError(f"lost the broker while reading the beat: {exc!r}") from exc
        finally:
            with contextlib.suppress(*CONNECTION_ERRORS):
                connection.close()
    raise AssertionError("unreachable")  # the last attempt returns or raises


def _queue_starting(error: BaseException) -> bool:
    """The broker's 541 for a quorum queue whose process is not running yet (a beat has just
    declared it): it closes the whole connection; a moment later the queue answers."""
    return (
        isinstance(error, pika.exceptions.ConnectionClosedByBroker)
        and error.reply_code == INTERNAL_ERROR
        and "noproc" in str(error.reply_text)
    )


def _lease_held(connection: Any, group: str) -> bool:
    # Only the holder's connection may declare an exclusive queue, even passively: 405.
    return _passive_declare(connection, leader_queue_name(group)) in (None, RESOURCE_LOCKED)


def _peek_state(connection: Any, group: str) -> BeatState | None:
    queue = state_queue_name(group)
    if _passive_declare(connection, queue) == NOT_FOUND:
        return None
    channel = connection.channel()
    states = [state for _, state in _get_states(channel, queue, drop_unreadable=False)]
    channel.close()  # everything peeked at goes back to the queue
    return newest(states)


def _passive_declare(connection: Any, queue: str) -> int | None:
    """None if ``queue`` exists and we may use it; else the broker's reply code (404, 405)."""
    channel = connection.channel()
    try:
        channel.queue_declare(queue, passive=True)
    except pika.exceptions.ChannelClosedByBroker as exc:
        return int(exc.reply_code)
    channel.close()
    return None


def _get_states(
    channel: BlockingChannel, queue: str, *, drop_unreadable: bool = True
) -> list[tuple[int, BeatState]]:
    """Every state copy in ``queue``, held unacked (delivery tag, state). An unreadable copy
    is logged and, by the leader (``drop_unreadable``), removed; a reader leaves it."""
    held: list[tuple[int, BeatState]] = []
    while True:
        method, _properties, body = channel.basic_get(queue, auto_ack=False)
        if method is None:
            return held
        try:
            held.append((method.delivery_tag, decode_state(body)))
        except MessageDecodeError as exc:
            if drop_unreadable:
                log.error("dropping an unreadable beat state message: %s", exc)
                channel.basic_ack(method.delivery_tag)
