"""Reading and replaying a dead-letter queue, for ``rabbitq dead``.

Messages are taken with ``basic.get`` and left unacked: whatever is not explicitly removed
returns to the queue, in order, when the channel closes. Replay republishes a batch with
publisher confirms and acks (removes) only the dead letters whose copy was confirmed, so an
interrupted replay loses nothing (at worst a message is in both places, and runs again).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions

from rabbitq.amqp.blocking import BlockingPublisher
from rabbitq.dead_letters import (
    DeadLetterSummary,
    ReplayTarget,
    replay_envelope,
    replay_target,
)
from rabbitq.errors import BrokerError, PublishError
from rabbitq.message import Envelope, envelope_from_properties

REPLAY_BATCH = 200


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
        try:
            self._connection = pika.BlockingConnection(pika.URLParameters(url))
            self._channel = self._connection.channel()
            self._depth = self._channel.queue_declare(queue, passive=True).method.message_count
        except pika.exceptions.ChannelClosedByBroker as exc:
            raise BrokerError(f"queue {queue!r} does not exist ({exc.reply_text})") from None
        except pika.exceptions.AMQPError as exc:
            raise BrokerError(f"cannot open {queue!r}: {exc!r}") from None

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
