"""Worker events: ``worker-online`` when consuming begins, ``worker-heartbeat`` every two
seconds, ``worker-offline`` when the worker stops; sent unless ``--without-heartbeat``, with
or without ``-E``, as Celery does. Flower and ``rabbitq status`` list a node by them, and
count it offline when two heartbeats are missed.

Besides Celery's fields each carries four of rabbitq's (Celery's readers ignore them), so
``rabbitq status`` needs no remote-control round trip: ``rabbitq_concurrency`` (task slots),
``rabbitq_queues`` (the queues it consumes), ``rabbitq_chords`` (chords this process
tallies as the chord coordinator; 0 on every process but the coordinating one) and
``rabbitq_limits`` (the global limits it enforces, with what each allows).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

from rabbitq.events.dispatcher import EventDispatcher
from rabbitq.events.event import HEARTBEAT_INTERVAL, load_average, software_info
from rabbitq.middleware.middleware import Middleware

log = logging.getLogger("rabbitq.events")


class Beating(Protocol):
    """What a heartbeat reports of the worker (``worker.consumer.Consumer``)."""

    @property
    def active(self) -> int: ...

    @property
    def processed(self) -> int: ...

    @property
    def concurrency(self) -> int: ...

    @property
    def queues(self) -> tuple[str, ...]: ...

    @property
    def chords_in_flight(self) -> int: ...

    @property
    def declared_limits(self) -> list[dict[str, Any]]: ...


class WorkerHeartbeat(Middleware):
    def __init__(self, dispatcher: EventDispatcher, interval: float = HEARTBEAT_INTERVAL) -> None:
        self.dispatcher = dispatcher
        self.interval = interval
        self._beating: asyncio.Task[None] | None = None

    def worker_start(self, worker: Any) -> None:
        self._send("worker-online", worker)
        self._beating = asyncio.get_running_loop().create_task(self._beat(worker))

    async def worker_stop(self, worker: Any) -> None:
        if self._beating is not None:
            self._beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beating
        self._send("worker-offline", worker)

    def beat_now(self, worker: Beating) -> None:
        """One heartbeat out of turn (remote control's ``heartbeat``)."""
        self._send("worker-heartbeat", worker)

    async def _beat(self, worker: Beating) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self._send("worker-heartbeat", worker)
            except Exception:  # a heartbeat must never end the loop that sends them
                log.exception("heartbeat not sent")

    def _send(self, event_type: str, worker: Beating) -> None:
        self.dispatcher.send(
            event_type,
            freq=self.interval,
            active=worker.active,
            processed=worker.processed,
            loadavg=load_average(),
            **software_info(),
            rabbitq_concurrency=worker.concurrency,
            rabbitq_queues=list(worker.queues),
            rabbitq_chords=worker.chords_in_flight,
            rabbitq_limits=worker.declared_limits,
        )
