"""An in-memory broker for users' tests: RabbitMQ as rabbitq uses it, without RabbitMQ.

``App(broker="memory://")`` publishes here, and ``StubWorker`` (``stub_worker.py``) runs the
worker's own pipeline on what arrives, so routing, retries, dead letters, countdowns, the
canvas and rpc results behave as they do on a real broker. It models exactly what rabbitq
relies on, with RabbitMQ's rules:

* the ``rabbitq`` topic exchange, each queue bound with its routing patterns, and the default
  exchange (a queue by name); a publish that reaches no queue raises ``UnroutableError`` at
  the caller, as a mandatory publish does;
* queues, declared on first publish or by a worker, each with its ``<queue>.dead``;
* the delay levels: a delayed message waits on this broker's clock, then goes where
  ``rabbitq.delivery`` sends it (its routing key says where); if nothing is bound there any
  more it lands in ``rabbitq.delay.dead``, as on RabbitMQ;
* reply queues (``rpc://`` results), handed to their listener as they are published;
* unacked deliveries: a worker that stops without settling one gives it back, redelivered;
* events (``celeryev``): kept in ``events`` for the test to read.

The clock is virtual: real time plus an offset that only grows. ``advance(seconds)`` moves it;
``StubWorker.join()`` moves it to the next due message whenever nothing else is left to run,
so a countdown or a retry's backoff costs no real time and keeps its order. Not modelled:
queue limits (``x-max-length``), priorities, quorum delivery counts, pidbox (remote control
and revokes), streams.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import heapq
import itertools
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from rabbitq.broker_urls import MEMORY_SCHEME
from rabbitq.chords import CHORD_DEAD_QUEUE, CHORD_QUEUE
from rabbitq.delays import (
    DELIVERY_EXCHANGE,
    EXCHANGE_PREFIX,
    QUEUE,
    UNROUTABLE_QUEUE,
    decode_delay,
)
from rabbitq.errors import PublishError, UnroutableError
from rabbitq.message import Envelope
from rabbitq.topology import TASK_EXCHANGE, QueueSpec, dead_letter_queue_name

SCHEME = MEMORY_SCHEME
EVENT_EXCHANGE = "celeryev"

_brokers: dict[str, StubBroker] = {}
_brokers_lock = threading.RLock()  # stub_for makes a broker while holding it


def stub_for(url: str) -> StubBroker:
    """The in-memory broker a ``memory://name`` URL names, made on first use (as Celery's
    ``memory://`` transport): every app of this process with that URL shares it."""
    with _brokers_lock:
        broker = _brokers.get(url)
        if broker is None:
            broker = StubBroker(url[len(SCHEME) :] or "default")
        return broker


def topic_matches(pattern: str, key: str) -> bool:
    """RabbitMQ's topic rule: ``*`` is one word, ``#`` is zero or more words."""
    return _match(pattern.split("."), key.split("."))


def _match(pattern: Sequence[str], words: Sequence[str]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    return (head == "*" or head == words[0]) and _match(rest, words[1:])


@dataclass
class StubMessage:
    """One message in a queue, or delivered and not acked yet."""

    queue: str
    exchange: str
    routing_key: str
    envelope: Envelope
    redelivered: bool = False
    tag: int = 0


@dataclass(order=True)
class _Delayed:
    due: float  # on this broker's clock (seconds since the epoch)
    seq: int
    routing_key: str = field(compare=False)
    envelope: Envelope = field(compare=False)


class StubBroker:
    """``broker = StubBroker(); app = App("shop", broker=broker.url)``."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name or uuid.uuid4().hex[:12]
        self.url = SCHEME + self.name
        self._changed = threading.Condition()
        self._queues: dict[str, deque[StubMessage]] = {}
        self._bindings: dict[str, tuple[str, ...]] = {}  # queue: its patterns on ``rabbitq``
        self._unacked: dict[int, StubMessage] = {}
        self._delayed: list[_Delayed] = []
        self._replies: dict[str, Callable[[Envelope], None]] = {}
        self._tags = itertools.count(1)
        self._offset = 0.0
        self.events: list[tuple[str, Envelope]] = []
        with _brokers_lock:
            _brokers[self.url] = self
        self.declare_queue(UNROUTABLE_QUEUE)
        for name_ in (CHORD_QUEUE, CHORD_DEAD_QUEUE):
            self.declare_queue(name_)

    def __repr__(self) -> str:
        return f"<StubBroker {self.url}>"

    # -- the clock --------------------------------------------------------------------------

    def time(self) -> float:
        """This broker's clock, in seconds since the epoch."""
        return time.time() + self._offset

    def now(self) -> dt.datetime:
        """This broker's clock as an aware UTC datetime (what the stub worker's pipeline reads)."""
        return dt.datetime.fromtimestamp(self.time(), dt.UTC)

    def advance(self, seconds: float) -> None:
        """Move the clock forward: every delayed message due by then is delivered."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._changed:
            self._offset += seconds
            self._release_due()
            self._changed.notify_all()

    def advance_to_next_due(self) -> bool:
        """Move the clock to the next delayed message, if any (True), and deliver it."""
        with self._changed:
            if not self._delayed:
                return False
            self._offset += max(0.0, self._delayed[0].due - self.time())
            self._release_due()
            self._changed.notify_all()
            return True

    # -- declaring --------------------------------------------------------------------------

    def declare(self, spec: QueueSpec) -> None:
        """A task queue as the routing file describes it: bound, with its dead-letter queue."""
        with self._changed:
            self.declare_queue(spec.name)
            self._bindings[spec.name] = spec.effective_bindings()
            self.declare_queue(spec.dead_letter_queue)

    def declare_queue(self, name: str) -> None:
        """A queue reached by name only (the default exchange)."""
        with self._changed:
            self._queues.setdefault(name, deque())

    def listen(self, queue: str, on_message: Callable[[Envelope], None]) -> None:
        """An rpc reply queue: each message published to it goes to ``on_message``."""
        with self._changed:
            self._replies[queue] = on_message

    # -- publishing -------------------------------------------------------------------------

    def publish(self, exchange: str, routing_key: str, envelope: Envelope) -> None:
        """Route one message as RabbitMQ would, or raise as a confirmed mandatory publish."""
        listener = None
        with self._changed:
            if exchange == "" and routing_key in self._replies:
                listener = self._replies[routing_key]
            elif exchange.startswith(EXCHANGE_PREFIX):
                delayed = decode_delay(routing_key)
                if delayed is None:
                    raise UnroutableError(routing_key, exchange)
                due = self.time() + delayed[0] / 1000
                heapq.heappush(
                    self._delayed, _Delayed(due, next(self._tags), routing_key, envelope)
                )
            else:
                queues = self._route(exchange, routing_key)
                if not queues:
                    raise UnroutableError(routing_key, exchange)
                for queue in queues:
                    self._enqueue(queue, exchange, routing_key, envelope)
            self._changed.notify_all()
        if listener is not None:
            listener(envelope)

    def record_event(self, routing_key: str, envelope: Envelope) -> None:
        with self._changed:
            self.events.append((routing_key, envelope))

    def _route(self, exchange: str, routing_key: str) -> list[str]:
        if exchange == "":
            return [routing_key] if routing_key in self._queues else []
        if exchange == TASK_EXCHANGE:
            return [
                queue
                for queue, patterns in self._bindings.items()
                if any(topic_matches(pattern, routing_key) for pattern in patterns)
            ]
        if exchange == DELIVERY_EXCHANGE:
            return self._delivery_targets(routing_key)
        raise PublishError(f"the in-memory broker has no exchange {exchange!r}")

    def _delivery_targets(self, routing_key: str) -> list[str]:
        """Where ``rabbitq.delivery`` sends a message whose delay is over."""
        delayed = decode_delay(routing_key)
        if delayed is None:
            return []
        _delay, kind, destination = delayed
        if kind == QUEUE:
            return [destination] if destination in self._bindings else []
        return self._route(TASK_EXCHANGE, destination)

    def _enqueue(self, queue: str, exchange: str, routing_key: str, envelope: Envelope) -> None:
        copy = dataclasses.replace(envelope, headers=dict(envelope.headers))
        self._queues[queue].append(StubMessage(queue, exchange, routing_key, copy))

    def _release_due(self) -> None:
        now = self.time()
        while self._delayed and self._delayed[0].due <= now:
            item = heapq.heappop(self._delayed)
            targets = self._delivery_targets(item.routing_key) or [UNROUTABLE_QUEUE]
            for queue in targets:
                self._enqueue(queue, DELIVERY_EXCHANGE, item.routing_key, item.envelope)

    # -- consuming --------------------------------------------------------------------------

    def get(self, queues: Iterable[str]) -> StubMessage | None:
        """The next ready message of the first of ``queues`` that has one, now unacked."""
        with self._changed:
            self._release_due()
            for queue in queues:
                ready = self._queues.get(queue)
                if ready:
                    message = ready.popleft()
                    message.tag = next(self._tags)
                    self._unacked[message.tag] = message
                    return message
            return None

    def ack(self, tag: int) -> None:
        with self._changed:
            self._unacked.pop(tag, None)
            self._changed.notify_all()

    def give_back(self, tag: int) -> None:
        """Unacked when its consumer went away: back at the head of its queue, redelivered."""
        with self._changed:
            message = self._unacked.pop(tag, None)
            if message is not None:
                message.redelivered = True
                self._queues[message.queue].appendleft(message)
            self._changed.notify_all()

    def wait(self, timeout: float) -> None:
        """Sleep until something is published, acked or given back, or ``timeout``."""
        with self._changed:
            self._changed.wait(timeout)

    def wake(self) -> None:
        with self._changed:
            self._changed.notify_all()

    # -- looking --------------------------------------------------------------------------

    def messages(self, queue: str) -> list[Envelope]:
        """What waits in ``queue`` now, oldest first (``<queue>.dead`` for its dead letters)."""
        with self._changed:
            return [message.envelope for message in self._queues.get(queue, ())]

    def dead_letters(self, queue: str) -> list[Envelope]:
        """The dead letters of task queue ``queue``, oldest first (why: their
        ``rabbitq_reason`` header; ``rabbitq.dead_letter_details`` reads them all)."""
        return self.messages(dead_letter_queue_name(queue))

    def delayed(self) -> int:
        """Messages waiting in the delay levels."""
        with self._changed:
            return len(self._delayed)

    def ready_counts(self, queues: Iterable[str]) -> dict[str, int]:
        """Messages ready for consumers in each of ``queues`` (due delayed ones included)."""
        with self._changed:
            self._release_due()
            return {queue: len(self._queues.get(queue, ())) for queue in queues}

    def unacked(self, *, besides: str | None = None) -> int:
        """Messages delivered to a consumer and not acked yet, in every queue but ``besides``."""
        with self._changed:
            return sum(1 for message in self._unacked.values() if message.queue != besides)

    def task_queues(self) -> list[str]:
        """The task queues declared so far (bound to ``rabbitq``), in declaration order."""
        with self._changed:
            return list(self._bindings)

    def purge(self) -> None:
        """Drop every message, delayed and ready (unacked ones are left to their consumer)."""
        with self._changed:
            for ready in self._queues.values():
                ready.clear()
            self._delayed.clear()
            self.events.clear()

    def close(self) -> None:
        """Forget this broker: its URL names a fresh one next time."""
        with _brokers_lock:
            if _brokers.get(self.url) is self:
                del _brokers[self.url]
