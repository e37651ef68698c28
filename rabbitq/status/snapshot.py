"""What ``rabbitq status``, the dashboard and the exporter show: one picture of the system, as
plain data (pure; ``amqp/status_collector.py`` fills it from the broker).

Every figure comes from RabbitMQ: queue figures from the management API, workers from their
heartbeats on ``celeryev``, the newest dead letter of each queue from ``<queue>.dead.newest``
(a one-message classic queue the worker refreshes as it dead-letters), the beat from its lease
and state queues, chords from the chord queue's figures and the coordinating worker's heartbeat.
Nothing is read by peeking into a task, dead, delay or chord queue: on a quorum queue every
peek counts as a delivery.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

QueueRole = Literal[
    "task", "dead", "delay", "chords", "beat", "events", "revocations", "limit", "other"
]


@dataclass(frozen=True)
class QueueFigures:
    """One queue as the management API reports it."""

    name: str
    role: QueueRole
    type: str  # classic | quorum | stream
    messages: int
    ready: int
    unacked: int
    consumers: int
    publish_rate: float  # messages/s, the management API's recent average
    deliver_rate: float  # deliveries (and gets) per second


@dataclass(frozen=True)
class NewestDeadLetter:
    """What the worker wrote of the newest message it dead-lettered into one dead queue."""

    id: str
    task: str
    reason: str
    exception: str
    dead_at: str  # ISO 8601


@dataclass(frozen=True)
class DeadQueueFigures:
    name: str  # emails.dead
    source: str  # emails
    messages: int
    newest: NewestDeadLetter | None  # None: none recorded (or dead-lettered by the broker)


@dataclass(frozen=True)
class DelayLevelFigures:
    level: int
    wait_ms: int  # every message in the level waits this long there
    messages: int


@dataclass(frozen=True)
class DeclaredLimit:
    """A global limit as a worker declares it in its heartbeat (``limits/spec.py``)."""

    name: str
    kind: str  # rate | concurrency | mutex
    rate: str | None = None  # a rate's "20/s"
    burst: int | None = None  # a rate's burst
    n: int | None = None  # concurrency: at once in all; mutex: at once per key


@dataclass(frozen=True)
class LimitFigures:
    """One global limit's state, read from its queues (``docs/limits.md``)."""

    name: str
    kind: str  # rate | concurrency | mutex (told by its queues when no worker declares it)
    declared: DeclaredLimit | None
    tokens: int | None  # a rate: tokens ready in its bucket (at most burst)
    refilled: bool | None  # a rate: a process holds the refiller queue
    holders: int  # slots held: tasks running under a concurrency or mutex limit
    keys: int  # a mutex: keys with a slot held or tasks waiting
    waiting: int  # tasks in the waiting queues, not yet taken by a worker
    taken: int  # tasks taken from the waiting queues: waiting for a token, or running


@dataclass(frozen=True)
class WorkerFigures:
    """A node as its newest heartbeat (or worker-online) describes it."""

    hostname: str
    pid: int | None
    concurrency: int | None
    active: int
    processed: int
    loadavg: tuple[float, ...]
    software: str  # "rabbitq 0.1.0", "py-celery 5.4.0"
    last_seen: float  # time.time() of its newest event
    online: bool  # heard from within two heartbeat intervals, and not gone offline
    queues: tuple[str, ...] = ()
    chords_in_flight: int | None = None  # None: a worker that does not report it (Celery's)
    limits: tuple[DeclaredLimit, ...] = ()


@dataclass(frozen=True)
class ChordFigures:
    parts_waiting: int  # parts in rabbitq.chords not yet taken by the coordinator
    parts_held: int  # parts the coordinator holds (unacked) while their chords are incomplete
    in_flight: int | None  # chords the coordinator tallies; None: no coordinator heard from
    coordinator: str | None  # the node that coordinates, from its heartbeat
    dead: int  # chords in rabbitq.chords.dead


@dataclass(frozen=True)
class BeatTick:
    entry: str
    schedule: str
    last: str  # ISO 8601
    next: str | None


@dataclass(frozen=True)
class BeatFigures:
    group: str
    led: bool
    leader: str | None
    leader_since: str | None
    state_written: str | None
    ticks: tuple[BeatTick, ...] = ()


@dataclass(frozen=True)
class Snapshot:
    taken_at: str  # ISO 8601, UTC
    broker: str  # the broker's address, without credentials
    broker_version: str
    queues: tuple[QueueFigures, ...] = ()
    workers: tuple[WorkerFigures, ...] = ()
    dead_queues: tuple[DeadQueueFigures, ...] = ()
    delay_levels: tuple[DelayLevelFigures, ...] = ()
    chords: ChordFigures | None = None
    beat: BeatFigures | None = None
    limits: tuple[LimitFigures, ...] = ()
    limits_returned: int = 0  # waiting tasks come back from a wait that ran long
    problems: tuple[str, ...] = field(default=())  # what could not be read, and why

    @property
    def task_queues(self) -> tuple[QueueFigures, ...]:
        return tuple(queue for queue in self.queues if queue.role == "task")

    @property
    def dead_letters(self) -> int:
        return sum(queue.messages for queue in self.dead_queues)

    @property
    def delayed(self) -> int:
        return sum(level.messages for level in self.delay_levels)


def snapshot_to_json(snapshot: Snapshot) -> dict[str, Any]:
    """A JSON-ready dict (``rabbitq status --json``, the dashboard's ``/api/status``)."""
    document = dataclasses.asdict(snapshot)
    document["totals"] = {
        "dead_letters": snapshot.dead_letters,
        "delayed": snapshot.delayed,
        "workers_online": sum(1 for worker in snapshot.workers if worker.online),
    }
    return document


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
