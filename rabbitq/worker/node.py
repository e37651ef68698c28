"""A worker process as remote control sees it: ``control.commands.Node`` over the consumer."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any, Protocol

from rabbitq.amqp.contract import Publishes
from rabbitq.events.dispatcher import EventDispatcher
from rabbitq.events.task_events import TaskEvents
from rabbitq.message import Envelope
from rabbitq.middleware import Middleware, WorkerStats
from rabbitq.middleware.middleware import TaskContext
from rabbitq.middleware.revocations import Revocations
from rabbitq.revocations import CONTENT_TYPE, Revocation
from rabbitq.topology import REVOCATION_STREAM

log = logging.getLogger("rabbitq.worker")

LOG_TIMEOUT = 5.0  # seconds to store a Celery revoke in the log: the asker waits for the reply


class Runs(Protocol):
    def runs(self) -> list[TaskContext]: ...
    def waiting(self) -> list[TaskContext]: ...


class Consumer(Protocol):
    """What the node needs of ``worker.consumer.Consumer`` (which imports this module)."""

    app: Any
    nodename: str
    concurrency: int
    prefetch: int
    queues: tuple[str, ...]
    events: EventDispatcher
    stats: WorkerStats
    revocations: Revocations

    @property
    def pipeline(self) -> Runs: ...
    @property
    def middleware(self) -> Iterable[Middleware]: ...
    @property
    def publisher(self) -> Publishes: ...
    async def add_queue(self, name: str) -> None: ...
    async def cancel_queue(self, name: str) -> bool: ...
    def send_heartbeat(self) -> None: ...


class WorkerNode:
    def __init__(self, consumer: Consumer) -> None:
        self._consumer = consumer
        self.app = consumer.app
        self.nodename = consumer.nodename
        self.concurrency = consumer.concurrency
        self.prefetch = consumer.prefetch
        self.started_at = time.time()
        self.shutdown_requested = asyncio.Event()

    @property
    def queues(self) -> tuple[str, ...]:
        return self._consumer.queues

    @property
    def clock(self) -> int:
        return self._consumer.events.clock.value

    def running(self) -> list[TaskContext]:
        return self._consumer.pipeline.runs()

    def waiting(self) -> list[TaskContext]:
        return self._consumer.pipeline.waiting()

    def totals(self) -> dict[str, int]:
        return dict(self._consumer.stats.by_task)

    def revoked_ids(self) -> list[str]:
        return self._consumer.revocations.ids()

    async def revoke(self, revocation: Revocation, *, log_it: bool) -> list[str]:
        terminated = self._consumer.revocations.apply(revocation)
        if log_it:
            # Celery's client only broadcasts: written here, the revoke reaches the workers
            # that are down now, and outlives this one. Each node that got the broadcast
            # writes it; the copies are one revoke to a reader.
            envelope = Envelope(revocation.encode(), {}, content_type=CONTENT_TYPE)
            await self._consumer.publisher.publish(
                REVOCATION_STREAM, envelope, exchange="", timeout=LOG_TIMEOUT
            )
        return terminated

    async def add_consumer(self, queue: str) -> None:
        await self._consumer.add_queue(queue)

    async def cancel_consumer(self, queue: str) -> bool:
        return await self._consumer.cancel_queue(queue)

    def shutdown(self) -> None:
        self.shutdown_requested.set()

    def task_events(self, enabled: bool | None) -> bool | None:
        events = next((m for m in self._consumer.middleware if isinstance(m, TaskEvents)), None)
        if events is None:
            return None
        before = events.enabled
        if enabled is not None:
            events.enabled = enabled
        return before

    def heartbeat(self) -> None:
        self._consumer.send_heartbeat()

    def __repr__(self) -> str:
        return f"<WorkerNode {self.nodename}>"
