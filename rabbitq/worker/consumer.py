"""The worker's consumer: the AMQP side of a worker process.

It connects (retrying with backoff while the broker is not up yet), declares what it consumes,
consumes each queue on a channel of its own, and hands every delivery to the pipeline
(``pipeline.py``), which decides and carries out what happens to it. On ``stop`` it cancels
its consumers, lets running tasks finish and ack, hands back what never started, and closes.

Whatever happens to the process, the broker still holds every unacked message and
redelivers it: at-least-once, so tasks must tolerate running twice (use the task id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Iterable
from functools import partial
from typing import Any

import aio_pika
import aiormq.exceptions
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection

from rabbitq.amqp.aio import AsyncPublisher
from rabbitq.amqp.declare import (
    declare_chord_queues,
    declare_delay_levels,
    declare_queue,
    declare_task_exchange,
    ensure_queue,
)
from rabbitq.app import App
from rabbitq.errors import RabbitqError
from rabbitq.middleware import WorkerStats
from rabbitq.redaction import without_password
from rabbitq.worker.acks import AckBatcher
from rabbitq.worker.coordinator import ChordCoordinator
from rabbitq.worker.delivery import Delivery
from rabbitq.worker.executor import Executor
from rabbitq.worker.followups import Followups
from rabbitq.worker.pipeline import Pipeline

log = logging.getLogger("rabbitq.worker")

BROKER_CALL_TIMEOUT = 5.0  # seconds, for the calls of an orderly shutdown
CONNECT_BACKOFF_FIRST = 0.5  # seconds between connection attempts, doubling...
CONNECT_BACKOFF_MAX = 10.0  # ...up to this
HANDLE_BACKOFF_MAX = 30.0  # pause before handing back a delivery the pipeline could not settle


class Consumer:
    """Consumes the given queues on one connection and runs their tasks."""

    def __init__(
        self,
        app: App,
        queues: Iterable[str],
        *,
        concurrency: int = 8,
        prefetch: int | None = None,
        coordinate_chords: bool = True,
    ) -> None:
        self.app = app
        self.queues = tuple(queues)
        if not self.queues:
            raise RabbitqError("a worker needs at least one queue")
        self.concurrency = concurrency
        self.prefetch = prefetch or concurrency * 4
        self.executor = Executor(concurrency)
        self.stats = WorkerStats()
        self.hostname = f"{os.getpid()}@{socket.gethostname()}"
        self._acks = AckBatcher()
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self._unsettled_failures = 0  # consecutive deliveries the pipeline could not settle
        self._connection: AbstractRobustConnection | None = None
        self._consumers: dict[str, tuple[aiormq.abc.AbstractChannel, str]] = {}
        self._publisher = AsyncPublisher(app.broker_url, publish_timeout=app.publish_timeout)
        self._followups = Followups(app, self._publisher)
        # The worker's own counters ride on the app's middleware, after the user's.
        self.middleware = app.middleware.added(self.stats)
        self.pipeline = Pipeline(
            app,
            self.middleware,
            self._publisher,
            self._acks,
            self.executor,
            self._followups,
            slots=asyncio.Semaphore(concurrency),
            worker_name=self.hostname,
            stopping=lambda: self._stopping,
            redeclare=self._redeclare,
        )
        self.coordinate_chords = coordinate_chords
        self._coordinator: ChordCoordinator | None = None

    # -- lifecycle --------------------------------------------------------------------------

    async def connect(self) -> AbstractRobustConnection:
        """Connect, retrying with backoff (and saying so) while the broker is not up yet."""
        delay = CONNECT_BACKOFF_FIRST
        while True:
            try:
                return await aio_pika.connect_robust(
                    self.app.broker_url,
                    client_properties={"connection_name": f"rabbitq-worker-{self.hostname}"},
                )
            except (OSError, aiormq.exceptions.AMQPError) as exc:
                log.warning(
                    "broker not reachable at %s (%s: %s); retrying in %.1fs",
                    without_password(self.app.broker_url),
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(CONNECT_BACKOFF_MAX, delay * 2)

    async def start(self) -> None:
        """Connect, declare the queues, and begin consuming."""
        self._connection = connection = await self.connect()
        await declare_task_exchange(connection)
        # Retries and re-delays go through the levels.
        await declare_delay_levels(connection, self.app.topology.delay_queue_type)
        configured = set(self.app.topology.configured_queue_names())
        for name in self.queues:
            spec = self.app.topology.queue(name)
            # A queue the routing file describes is declared exactly as described (a conflict
            # is reported); any other queue is created with defaults only if missing.
            if name in configured:
                await declare_queue(connection, spec)
            else:
                await ensure_queue(connection, spec)
            if spec.type == "quorum" and self.app.redelivery_limit >= (
                broker_limit := spec.effective_delivery_limit()
            ):
                # The broker would cut in first, dead-lettering without our reason headers.
                log.warning(
                    "queue %s: the broker's delivery limit (%d) is not above the worker's "
                    "redelivery_limit (%d); the broker dead-letters first",
                    name,
                    broker_limit,
                    self.app.redelivery_limit,
                )
        await self._publisher.connect()
        if self.coordinate_chords:
            self._coordinator = ChordCoordinator(
                self.app,
                connection,
                self._publisher,
                self._followups,
                fold_after=self.app.chord_fold_after,
                fold_parts=self.app.chord_fold_parts,
            )
            await self._coordinator.start()
        else:
            await declare_chord_queues(connection)  # members report there
        for name in self.queues:
            # One channel per queue: prefetch is per channel, and a channel error on one
            # queue does not stop the others.
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=self.prefetch)  # restored on reconnect
            await self._consume(channel, name)
            # After a reconnect aio-pika reopens the channel; consume again on the new one.
            channel.reopen_callbacks.add(partial(self._consume_again, name=name))
        log.info(
            "worker %s consuming %s (concurrency %d, prefetch %d, %d tasks registered)",
            self.hostname,
            ", ".join(self.queues),
            self.concurrency,
            self.prefetch,
            len(self.app.tasks),
        )
        await self.middleware.emit("worker_start", self)

    async def _consume(self, channel: AbstractRobustChannel, queue: str) -> None:
        # Consuming on aiormq's channel directly: aio-pika's message object and its extra task
        # per delivery cost more than the rest of a no-op task's handling.
        underlay = await channel.get_underlay_channel()
        ok = await underlay.basic_consume(queue, self._make_handler(queue), no_ack=False)
        assert ok.consumer_tag is not None
        self._consumers[queue] = (underlay, ok.consumer_tag)

    async def _consume_again(self, channel: AbstractRobustChannel, *, name: str) -> None:
        if not self._stopping:
            await self._consume(channel, name)

    async def stop(self, timeout: float | None = None) -> None:
        """Stop consuming, let running tasks finish and ack, then close."""
        self._stopping = True
        for queue, (underlay, tag) in self._consumers.items():
            # Bounded: with the broker gone, the call would wait for it forever.
            try:
                await asyncio.wait_for(underlay.basic_cancel(tag), BROKER_CALL_TIMEOUT)
            except Exception as exc:  # connection may already be gone
                log.debug("cancel of %s failed: %s", queue, exc)
        self._consumers.clear()
        if self._coordinator is not None:
            await self._coordinator.stop()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            log.warning(
                "%d task(s) still running at shutdown; the broker will redeliver them",
                self._in_flight,
            )
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._acks.flush(), BROKER_CALL_TIMEOUT)
        self.executor.shutdown()
        await self.middleware.emit("worker_stop", self)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._publisher.close(), BROKER_CALL_TIMEOUT)
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._connection.close(), BROKER_CALL_TIMEOUT)
        log.info(
            "worker %s stopped: %d succeeded, %d failed, %d retried, %d dead-lettered",
            self.hostname,
            self.stats.succeeded,
            self.stats.failed,
            self.stats.retried,
            self.stats.dead_lettered,
        )

    # -- one delivery -----------------------------------------------------------------------

    def _make_handler(self, queue: str) -> Any:
        async def handle(message: aiormq.abc.DeliveredMessage) -> None:
            self._in_flight += 1
            self._idle.clear()
            delivery: Delivery | None = None
            try:
                delivery = Delivery.of(queue, message)
                self._acks.delivered(delivery)
                await self.pipeline.handle(delivery)
                self._unsettled_failures = 0
            except Exception:
                if delivery is None:  # unreadable frame: the broker keeps it unacked
                    log.exception("could not read a delivery from %s", queue)
                else:
                    await self._requeue_unsettled(delivery)
            finally:
                self._in_flight -= 1
                if self._in_flight == 0:
                    self._idle.set()

        return handle

    async def _redeclare(self, queue: str) -> None:
        assert self._connection is not None
        await ensure_queue(self._connection, self.app.topology.queue(queue))

    async def _requeue_unsettled(self, delivery: Delivery) -> None:
        """The pipeline raised: a defect, since it settles every path it knows (publishing
        again until confirmed). The worker lives on; the message goes back to the queue after
        a pause that grows while failures repeat, so a persistent fault does not spin, and its
        redelivery counts towards the redelivery limit."""
        self._unsettled_failures += 1
        pause = min(HANDLE_BACKOFF_MAX, 2.0 ** (self._unsettled_failures - 1))
        log.exception(
            "could not settle a message from %s; requeueing it in %.0fs", delivery.queue, pause
        )
        await asyncio.sleep(pause)
        await self._acks.nack(delivery, requeue=True)
