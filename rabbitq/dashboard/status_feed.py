"""Where the dashboard's snapshots come from: ``StatusCollector`` in production, any object
with ``collect()`` in tests. Collecting blocks (AMQP and HTTP to the broker), so it runs in a
worker thread, off the event loop.

Whatever ``collect()`` raises becomes a ``Reading`` without a snapshot, saying why: the
overview then says it above its last figures and ``/api/status`` answers 503, never a 500.
pika has exceptions outside its ``AMQPError`` tree (``AMQPConnectorStackTimeout``, say), and a
page that cannot be drawn helps nobody, so any ``Exception`` counts; one that is not a known
broker failure is logged with its traceback.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from starlette.concurrency import run_in_threadpool

from rabbitq.errors import RabbitqError
from rabbitq.status.snapshot import Snapshot

logger = logging.getLogger("rabbitq.dashboard")


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
    except Exception as exc:
        logger.exception("dashboard: reading the broker's status failed")
        return Reading(None, f"cannot read the broker's status: {type(exc).__name__}: {exc}")
