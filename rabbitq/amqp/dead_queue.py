"""Reading and replaying a dead-letter queue, for ``rabbitq dead``.

Messages are taken with ``basic.get`` and left unacked: whatever is not explicitly removed
returns to the queue, in order, when the channel closes. Replay republishes a batch with
publisher confirms and acks (removes) only the dead letters whose copy was confirmed, so an
interrupted replay loses nothing (at worst a message is in both places, and runs again).

A quorum queue counts each hand-back as a delivery (RabbitMQ 4.x counts every return; 3.x
too, but applies no limit unless one is set) and past its delivery limit drops the message: a
dead queue dead-letters nowhere. rabbitq declares quorum dead queues with a limit no browsing
can reach; before browsing, ``DeadQueue`` finds out over AMQP which arguments the queue has
(a redeclare with other arguments is refused) and sets ``browse_problem`` when looking could
make a dead letter vanish.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import pika
import pika.exceptions
from pika.adapters.utils.connection_workflow import AMQPConnectorException

from rabbitq.amqp.blocking import BlockingPublisher
from rabbitq.amqp.connection_parameters import open_blocking
from rabbitq.broker_urls import refuse_in_memory
from rabbitq.dead_letters import (
    DeadLetterSummary,
    ReplayTarget,
    replay_envelope,
    replay_target,
)
from rabbitq.errors import BrokerConnectionError, BrokerError, PublishError, QueueNotFoundError
from rabbitq.message import Envelope, envelope_from_properties
from rabbitq.topology import DeadLetterQueueSpec

REPLAY_BATCH = 200

# What the redeclare probes found: a quorum queue with rabbitq's unreachable limit, a quorum
# queue without any x-delivery-limit argument, a classic queue, or something else.
QueueKind = Literal["quorum-unreachable-limit", "quorum-no-limit", "classic", "other"]
PROBES: tuple[tuple[QueueKind, dict[str, Any]], ...] = (
    ("quorum-unreachable-limit", DeadLetterQueueSpec("", "quorum").arguments()),
    ("quorum-no-limit", {"x-queue-type": "quorum"}),
    ("classic", {"x-queue-type": "classic"}),
)


def browse_problem(queue: str, kind: QueueKind, broker_version: str) -> str | None:
    """Why looking at ``queue`` (taking and handing back its messages) is unsafe, or None."""
    if kind in ("quorum-unreachable-limit", "classic"):
        return None
    if kind == "quorum-no-limit" and _major(broker_version) == 3:
        return None  # RabbitMQ 3.x sets no delivery limit unless asked to
    why = (
        "has no x-delivery-limit argument, so RabbitMQ 4.x gives it a limit of 20"
        if kind == "quorum-no-limit"
        else "was declared with arguments rabbitq did not give it (perhaps a low x-delivery-limit)"
    )
    return (
        f"{queue} is a quorum queue that {why}. Looking at a dead letter hands it back, which "
        "counts as a delivery, and past the limit the broker drops it for good, so rabbitq "
        f"does not look (broker {broker_version or 'of unknown version'}). "
        "`rabbitq dead replay --all` and `purge` still work; to browse, replay everything, "
        "delete the empty queue and let rabbitq declare it again (docs/topology.md)."
    )


def _major(version: str) -> int | None:
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else None


@dataclass(frozen=True)
class DeadLetter:
    tag: int
    routing_key: str
    envelope: Envelope

    @property
    def summary(self) -> DeadLetterSummary:
        return DeadLetterSummary.of(self.envelope)


class DeadQueue:
    """A dead-letter queue opened for browsing, removal and replay."""

    def __init__(self, url: str, queue: str) -> None:
        self.url = url
        self.queue = queue
        refuse_in_memory(url, "browsing a dead-letter queue (StubBroker.dead_letters reads them)")
        try:
            self._connection = open_blocking(url, f"browsing {queue!r}")
            self._channel = self._connection.channel()
            self._depth = self._channel.queue_declare(queue, passive=True).method.message_count
            self.kind = self._probe_kind()
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                raise QueueNotFoundError(f"queue {queue!r} does not exist") from None
            raise BrokerError(f"cannot open {queue!r}: {exc.reply_text}") from None
        except (pika.exceptions.AMQPConnectionError, AMQPConnectorException, OSError) as exc:
            raise BrokerConnectionError(f"cannot reach the broker: {exc!r}") from None
        except pika.exceptions.AMQPError as exc:
            raise BrokerError(f"cannot open {queue!r}: {exc!r}") from None
        version = self._connection._impl.server_properties.get("version", b"")
        self.broker_version = version.decode() if isinstance(version, bytes) else str(version)
        self.browse_problem = browse_problem(queue, self.kind, self.broker_version)

    def _probe_kind(self) -> QueueKind:
        """Redeclare with each argument set rabbitq uses: the broker refuses (406, closing
        that probe's channel) unless the queue has exactly those. The queue exists (checked
        passively just before), so a probe that succeeds creates nothing."""
        for kind, arguments in PROBES:
            probe = self._connection.channel()
            try:
                probe.queue_declare(self.queue, durable=True, arguments=arguments)
            except pika.exceptions.ChannelClosedByBroker:
                continue
            probe.close()
            return kind
        return "other"

    def __enter__(self) -> DeadQueue:
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.close()

    @property
    def depth(self) -> int:
        return int(self._depth)

    def __iter__(self) -> Iterator[DeadLetter]:
        while True:
            method, properties, body = self._channel.basic_get(self.queue, auto_ack=False)
            if method is None:
                return
            yield DeadLetter(
                method.delivery_tag, method.routing_key, envelope_from_properties(properties, body)
            )

    def remove(self, letter: DeadLetter) -> None:
        self._channel.basic_ack(letter.tag)

    def purge(self) -> int:
        return int(self._channel.queue_purge(self.queue).method.message_count)

    def replay(
        self,
        select: Callable[[DeadLetter], bool],
        progress: Callable[[int], None] = lambda _n: None,
    ) -> tuple[int, list[str]]:
        """Republish the selected dead letters; returns (replayed, problems)."""
        publisher = BlockingPublisher(self.url)
        replayed = 0
        problems: list[str] = []
        try:
            selected = (letter for letter in self if select(letter))
            while batch := list(itertools.islice(selected, REPLAY_BATCH)):
                done, failed = self._replay_batch(publisher, batch)
                for letter in done:
                    self.remove(letter)
                replayed += len(done)
                problems += failed
                progress(len(batch))
        finally:
            publisher.close()
        return replayed, problems

    def _replay_batch(
        self, publisher: BlockingPublisher, batch: list[DeadLetter]
    ) -> tuple[list[DeadLetter], list[str]]:
        by_exchange: dict[str, list[tuple[DeadLetter, ReplayTarget]]] = {}
        for letter in batch:
            target = replay_target(letter.envelope, self.queue, letter.routing_key)
            by_exchange.setdefault(target.exchange, []).append((letter, target))
        done: list[DeadLetter] = []
        failed: list[str] = []
        for exchange, items in by_exchange.items():
            errors = publisher.publish_many(
                [
                    (target.routing_key, replay_envelope(letter.envelope))
                    for letter, target in items
                ],
                exchange=exchange,
            )
            for (letter, _target), error in zip(items, errors, strict=True):
                if error is None:
                    done.append(letter)
                else:
                    failed.append(f"{letter.summary.id}: {_describe(error)}")
        return done, failed

    def close(self) -> None:
        if self._connection.is_open:
            self._connection.close()  # unacked (unselected, unconfirmed) go back to the queue


def _describe(error: PublishError) -> str:
    return f"{type(error).__name__}: {error}"
