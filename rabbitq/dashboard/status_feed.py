"""Where the dashboard's snapshots come from: ``StatusCollector`` in production, any object
with ``collect()`` in tests. Collecting blocks (AMQP and HTTP to the broker), so it runs in a
worker thread, off the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from starlette.concurrency import run_in_threadpool

from rabbitq.errors import RabbitqError
from rabbitq.status.snapshot import Snapshot


class StatusSource(Protocol):
    def collect(self) -> Snapshot: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Reading:
    """A snapshot, or why there is none (the broker unreachable, say)."""

    snapshot: Snapshot | None
    problem: str | None = None


async def read_status(source: StatusSource) -> Reading:
    try:
        return Reading(await run_in_threadpool(source.collect))
    except (RabbitqError, OSError) as exc:
        return Reading(None, f"cannot read the broker's status: {exc}")
