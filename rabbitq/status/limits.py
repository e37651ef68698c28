"""Each global limit's state, from its queues' figures and the workers' heartbeats. Pure.

A limit's structures are queues (``limits/names.py``), so the management API's queue list
says everything but what the limit is: a rate's bucket holds its tokens, a slot queue exists
only while a task holds the slot, a waiting queue's ready messages wait for a worker to take
them. What the limit allows (its rate, its n) is in the heartbeat of each worker declaring it;
a limit no worker online declares is still shown, by its queues, its kind told by them (a
bucket: a rate; keyed queues: a mutex; else a concurrency limit).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from rabbitq.limits.names import parse_queue
from rabbitq.status.snapshot import DeclaredLimit, LimitFigures, QueueFigures, WorkerFigures


@dataclass
class _Tally:
    tokens: int | None = None
    burst: int | None = None
    refilled: bool = False
    holders: int = 0
    waiting: int = 0
    taken: int = 0
    keyed: bool = False
    keys: set[str] = field(default_factory=set)


def limit_figures(
    queues: Iterable[QueueFigures], workers: Iterable[WorkerFigures]
) -> tuple[LimitFigures, ...]:
    """One ``LimitFigures`` per limit with a queue on the broker or declared by a worker
    online, sorted by name."""
    declared = _declared(workers)
    tallies: dict[str, _Tally] = {name: _Tally() for name in declared}
    for queue in queues:
        parsed = parse_queue(queue.name)
        if parsed is None:
            continue
        tally = tallies.setdefault(parsed.limit, _Tally())
        if parsed.part == "tokens":
            # A burst changed since leaves the old bucket behind: the current one counts.
            wanted = declared.get(parsed.limit)
            if wanted is None or wanted.burst in (None, parsed.number):
                tally.tokens, tally.burst = queue.ready, parsed.number
        elif parsed.part == "refiller":
            tally.refilled = True
        elif parsed.part == "slot":
            tally.holders += 1
        elif parsed.part == "waiting":
            tally.waiting += queue.ready
            tally.taken += queue.unacked
        if parsed.key is not None:
            tally.keyed = True
            if parsed.part == "slot" or queue.messages:
                tally.keys.add(parsed.key)
    return tuple(
        _figures(name, tally, declared.get(name)) for name, tally in sorted(tallies.items())
    )


def _figures(name: str, tally: _Tally, declared: DeclaredLimit | None) -> LimitFigures:
    kind = declared.kind if declared is not None else _kind_by_queues(tally)
    is_rate = kind == "rate"
    return LimitFigures(
        name=name,
        kind=kind,
        declared=declared,
        tokens=(tally.tokens or 0) if is_rate else None,
        refilled=tally.refilled if is_rate else None,
        holders=tally.holders,
        keys=len(tally.keys),
        waiting=tally.waiting,
        taken=tally.taken,
    )


def _kind_by_queues(tally: _Tally) -> str:
    if tally.burst is not None or tally.refilled:
        return "rate"
    return "mutex" if tally.keyed else "concurrency"


def _declared(workers: Iterable[WorkerFigures]) -> dict[str, DeclaredLimit]:
    found: dict[str, DeclaredLimit] = {}
    for worker in workers:
        if worker.online:
            for limit in worker.limits:
                found.setdefault(limit.name, limit)
    return found


def describe(limit: DeclaredLimit | None) -> str:
    """``20/s burst 5``, ``3 at once``, ``1 per key``; ``no worker`` when no worker online
    declares it."""
    if limit is None:
        return "no worker"
    if limit.kind == "rate":
        return f"{limit.rate} burst {limit.burst}"
    if limit.kind == "concurrency":
        return f"{limit.n} at once"
    return f"{limit.n} per key"
