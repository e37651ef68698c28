"""Poison-message protection: how often has this message been delivered before?

A message whose task kills the worker process (segfault, OOM kill, ``os._exit``) is never
acked, so the broker redelivers it to the next worker, which dies too. Past a limit we
dead-letter it instead.

The count is the worker's own header ``rabbitq_redeliveries`` plus, on a quorum queue, the
broker's ``x-delivery-count``:

* Classic queues only flag ``redelivered``, so a redelivered message is republished with the
  header incremented (confirmed), the original acked, and the copy runs normally.
* Quorum queues count returns themselves (``x-delivery-count``). The header is trusted only
  from a queue the worker knows to be quorum (its routing spec), and only on a redelivery:
  the broker sets it then, so on a first delivery any such header came from a publisher, and
  a classic queue never sets it at all (a shovel or a tool may copy one along; trusted, it
  would stop the classic count and let a message that kills workers run for ever). A quorum
  queue the worker takes for classic is still safe: it is counted the classic way. Every
  republish of ours strips the header (retries, re-delays, hand-backs, dead letters,
  replays), so a replayed dead letter starts from zero instead of being dead-lettered again.
* A message handed back at shutdown before it started is republished with its count
  unchanged (``pipeline.py``), not nacked: a nack would count as a redelivery on both queue
  types, and on RabbitMQ 4.x quorum queues towards the broker's own delivery limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

REDELIVERY_COUNT_HEADER = "rabbitq_redeliveries"
QUORUM_DELIVERY_COUNT_HEADER = "x-delivery-count"
# Counts that belong to one delivery history: a republished copy never carries them as sent.
COUNT_HEADERS = frozenset({REDELIVERY_COUNT_HEADER, QUORUM_DELIVERY_COUNT_HEADER})


@dataclass(frozen=True)
class RedeliveryVerdict:
    action: Literal["run", "recount", "dead-letter"]
    redeliveries: int


def _count(headers: dict[str, Any], name: str) -> int | None:
    value = headers.get(name)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def redeliveries_so_far(redelivered: bool, headers: dict[str, Any], *, quorum: bool) -> int:
    """The count a copy of this delivery must carry so that no redelivery is forgotten."""
    counted = _count(headers, REDELIVERY_COUNT_HEADER) or 0
    if redelivered and quorum:
        counted += _count(headers, QUORUM_DELIVERY_COUNT_HEADER) or 0
    return counted


def judge_redelivery(
    redelivered: bool, headers: dict[str, Any], limit: int, *, quorum: bool = False
) -> RedeliveryVerdict:
    """Decide what to do with a delivery, given at most ``limit`` redeliveries are tolerated;
    ``quorum``: it came from a queue known to be a quorum queue."""
    counted = _count(headers, REDELIVERY_COUNT_HEADER) or 0
    if not redelivered:
        return RedeliveryVerdict("run", counted)
    quorum_count = _count(headers, QUORUM_DELIVERY_COUNT_HEADER) if quorum else None
    if quorum_count is not None:
        total = counted + quorum_count
        return RedeliveryVerdict("dead-letter" if total > limit else "run", total)
    counted += 1
    return RedeliveryVerdict("dead-letter" if counted > limit else "recount", counted)
