"""Poison-message protection: how often has this message been delivered before?

A message whose task kills the worker process (segfault, OOM kill, ``os._exit``) is never
acked, so the broker redelivers it to the next worker, which dies too. Past a limit we
dead-letter it instead. Quorum queues count deliveries for us (``x-delivery-count``).
Classic queues only flag ``redelivered``, so the worker keeps the count in a header: a
redelivered message is republished with the count incremented (confirmed) and the original
acked; the copy then runs normally.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

REDELIVERY_COUNT_HEADER = "rabbitq_redeliveries"
QUORUM_DELIVERY_COUNT_HEADER = "x-delivery-count"


@dataclass(frozen=True)
class RedeliveryVerdict:
    action: Literal["run", "recount", "dead-letter"]
    redeliveries: int


def judge_redelivery(redelivered: bool, headers: dict[str, Any], limit: int) -> RedeliveryVerdict:
    """Decide what to do with a delivery, given at most ``limit`` redeliveries are tolerated."""
    quorum_count = headers.get(QUORUM_DELIVERY_COUNT_HEADER)
    if isinstance(quorum_count, int) and not isinstance(quorum_count, bool):
        return RedeliveryVerdict("dead-letter" if quorum_count > limit else "run", quorum_count)
    counted = headers.get(REDELIVERY_COUNT_HEADER, 0)
    if not isinstance(counted, int) or isinstance(counted, bool):
        counted = 0
    if not redelivered:
        return RedeliveryVerdict("run", counted)
    counted += 1
    return RedeliveryVerdict("dead-letter" if counted > limit else "recount", counted)
