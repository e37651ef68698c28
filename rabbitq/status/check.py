"""``rabbitq status --check``: is the broker reachable and are enough workers alive? Pure.

The verdict is made from what one heartbeat interval of listening on ``celeryev`` heard
(``amqp/status_collector.hear_workers``): a worker is alive when its heartbeat was heard and
no ``worker-offline`` followed it. Without queues named, at least ``min_workers`` alive
workers are needed in all; with queues named, at least ``min_workers`` consuming each of
them (a heartbeat's ``rabbitq_queues``, which Celery workers do not send). Each process of
``rabbitq worker -P N`` is a node of its own and counts as one worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rabbitq.status.snapshot import WorkerFigures


@dataclass(frozen=True)
class CheckVerdict:
    healthy: bool
    line: str  # one line saying which: "OK: ..." or "FAIL: ..."


def judge_check(
    broker_problem: str | None,
    workers: Sequence[WorkerFigures],
    *,
    min_workers: int = 1,
    queues: Sequence[str] = (),
) -> CheckVerdict:
    """The verdict on what was heard; ``broker_problem`` says why nothing could be (None:
    the broker was listened to)."""
    if broker_problem is not None:
        return CheckVerdict(False, f"FAIL: broker unreachable: {broker_problem}")
    alive = [worker for worker in workers if worker.online]
    if not queues:
        if len(alive) < min_workers:
            return CheckVerdict(False, f"FAIL: {_count(len(alive))} alive, {min_workers} needed")
        return CheckVerdict(True, f"OK: {_count(len(alive))} alive{_names(alive)}")
    short: list[str] = []
    counts: list[str] = []
    for queue in dict.fromkeys(queues):
        consuming = sum(1 for worker in alive if queue in worker.queues)
        counts.append(f"{queue}: {consuming}")
        if consuming < min_workers:
            short.append(f"{queue} has {_count(consuming)}")
    if short:
        return CheckVerdict(
            False, f"FAIL: {'; '.join(short)} alive consuming it, {min_workers} needed"
        )
    return CheckVerdict(True, f"OK: workers alive per queue: {', '.join(counts)}")


def _count(number: int) -> str:
    return f"{number} worker{'' if number == 1 else 's'}"


def _names(workers: Sequence[WorkerFigures]) -> str:
    return f" ({', '.join(worker.hostname for worker in workers)})" if workers else ""
