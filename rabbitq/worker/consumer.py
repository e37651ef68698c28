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
import weakref
from collections.abc import Iterable
from functools import partial
from typing import Any

import aiormq.exceptions
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

from rabbitq.amqp.aio import AsyncPublisher
from rabbitq.amqp.aio_connection import robust_connection
from rabbitq.amqp.connection_parameters import connection_failure
from rabbitq.amqp.declare import (
    declare_chord_queues,
    declare_delay_levels,
    declare_event_history,
    declare_queue,
    declare_task_exchange,
    ensure_queue,
)
from rabbitq.amqp.revocation_log import RevocationFollower, declare_revocation_log
from rabbitq.app import App
from rabbitq.broker_urls import refuse_in_memory
from rabbitq.errors import BrokerTlsError, RabbitqError, TopologyConflictError
from rabbitq.events.dispatcher import BATCH_WINDOW, EventDispatcher
from rabbitq.events.heartbeat import WorkerHeartbeat
from rabbitq.events.task_events import TaskEvents
from rabbitq.limits.names import RETURNED_QUEUE
from rabbitq.limits.resolve import task_limits
from rabbitq.middleware import Middleware, MiddlewareStack, WorkerStats
from rabbitq.middleware.revocations import Revocations
from rabbitq.nodename import DEFAULT_NODENAME, format_nodename
from rabbitq.timeouts import refuse_limits_over_the_ceiling
from rabbitq.topology import EventHistory
from rabbitq.worker.acks import AckBatcher
from rabbitq.worker.coordinator import ChordCoordinator
from rabbitq.worker.delivery import Delivery
from rabbitq.worker.executor import Executor
from rabbitq.worker.followups import Followups
from rabbitq.worker.limits import Limits
from rabbitq.worker.mailbox import Mailbox
from rabbitq.worker.newest_dead_letter import NewestDeadLetterRecord
from rabbitq.worker.node import WorkerNode
from rabbitq.worker.pipeline import Pipeline
from rabbitq.worker.recycling import Recycler, Recycling, end_now
from rabbitq.worker.slots import Slots
from rabbitq.worker.time_limits import TimeLimits

log = logging.getLogger("rabbitq.worker")

BROKER_CALL_TIMEOUT = 5.0  # seconds, for the calls of an orderly shutdown
CONNECT_BACKOFF_FIRST = 0.5  # seconds between connection attempts, doubling...
CONNECT_BACKOFF_MAX = 10.0  # ...up to this
HANDLE_BACKOFF_MAX = 30.0  # pause before handing back a delivery the pipeline could not settle
# A process recycled because a thread is stuck is gone this long after, at the latest: its
# running tasks have that long to finish (``--shutdown-timeout`` overrides it).
STUCK_RECYCLE_WITHIN = 60.0


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
        max_tasks_per_child: int | None = None,
        max_memory_per_child: int | None = None,
        recycle_within: float | None = None,
        nodename: str | None = None,
        task_events: bool | None = None,
        heartbeat: bool = True,
    ) -> None:
        self.app = app
        self.queues = tuple(queues)
        if not self.queues:
            raise RabbitqError("a worker needs at least one queue")
        refuse_limits_over_the_ceiling(app.tasks, app.consumer_timeout)
        self.concurrency = concurrency
        self.prefetch = prefetch or concurrency * 4
        self.executor = Executor(concurrency)
        self.stats = WorkerStats()
        self.hostname = f"{os.getpid()}@{socket.gethostname()}"
        # What events, Flower and remote control call this process (``nodename.py``).
        self.nodename = nodename or format_nodename(DEFAULT_NODENAME)
        self._acks = AckBatcher()
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self._unsettled_failures = 0  # consecutive deliveries the pipeline could not settle
        self._connection: AbstractRobustConnection | None = None
        self._consumers: dict[str, tuple[aiormq.abc.AbstractChannel, str]] = {}
        # Channels hooked for consumer cancels and closes (reopened ones are new objects).
        self._watched: weakref.WeakSet[aiormq.abc.AbstractChannel] = weakref.WeakSet()
        self._pending: set[asyncio.Task[None]] = set()
        refuse_in_memory(app.broker_url, "rabbitq worker (StubWorker runs on memory://)")
        self._publisher = AsyncPublisher(app.broker_url, publish_timeout=app.publish_timeout)
        self._followups = Followups(app, self._publisher)
        # Set when this process should be replaced (``recycle``): the process stops consuming,
        # lets running tasks finish, and exits or re-executes itself (``process.py``).
        self.recycler = Recycler(self.hostname, recycle_within or STUCK_RECYCLE_WITHIN)
        # The worker's own middleware ride on the app's, after the user's: time limits arm
        # their timers right before the task, and the counters see every outcome.
        own: list[Middleware] = [
            TimeLimits(app.consumer_timeout),
            NewestDeadLetterRecord(
                lambda key, envelope, timeout: self._publisher.publish(
                    key, envelope, exchange="", timeout=timeout
                )
            ),
        ]
        if max_tasks_per_child is not None or max_memory_per_child is not None:
            own.append(
                Recycling(
                    self.recycler.recycle,
                    max_tasks=max_tasks_per_child,
                    max_memory_kib=max_memory_per_child,
                )
            )
        self.task_events = app.worker_send_task_events if task_events is None else task_events
        self.events = EventDispatcher(
            self.nodename,
            self._publisher.send_event,
            # Task events of a short window leave together, as one task.multi message.
            schedule=lambda flush: asyncio.get_running_loop().call_later(BATCH_WINDOW, flush),
        )
        if self.task_events:
            own.append(TaskEvents(self.events))
        self._heartbeat = WorkerHeartbeat(self.events) if heartbeat else None
        if self._heartbeat is not None:
            own.append(self._heartbeat)
        # Global limits and rate_limit (docs/limits.md): checked now, so a worker with a
        # limit that cannot hold does not start.
        found = task_limits(app.tasks, app.topology.limits)
        self.limits = (
            Limits(
                found,
                self._publisher,
                self._acks,
                concurrency=concurrency,
                stopping=lambda: self.stopping,
            )
            if found
            else None
        )
        if self.limits is not None:
            own.append(self.limits)
        # Revocations come first of all: a revoked task starts no other middleware's work.
        self.revocations = Revocations()
        self.middleware = MiddlewareStack((self.revocations, *app.middleware, *own, self.stats))
        self.pipeline = Pipeline(
            app,
            self.middleware,
            self._publisher,
            self._acks,
            self.executor,
            self._followups,
            slots=Slots(concurrency),
            worker_name=self.nodename,
            # Recycling: what has not started yet is handed back, as at a stop.
            stopping=lambda: self.stopping,
            redeclare=self._redeclare,
            recycle=self.recycler.recycle_by,
            end_now=end_now,
        )
        self.coordinate_chords = coordinate_chords
        self._coordinator: ChordCoordinator | None = None
        self.node = WorkerNode(self)  # what remote control reads and steers
        self._mailbox: Mailbox | None = None
        self._revocation_log: RevocationFollower | None = None

    @property
    def active(self) -> int:
        """Tasks running now (a heartbeat's ``active``)."""
        return self.pipeline.running

    @property
    def in_flight(self) -> int:
        """Deliveries received and not settled yet (waiting for a slot, or running)."""
        return self._in_flight

    @property
    def chords_in_flight(self) -> int:
        """Chords this process tallies as chord coordinator (heartbeats: ``rabbitq_chords``)."""
        return self._coordinator.in_flight if self._coordinator is not None else 0

    @property
    def declared_limits(self) -> list[dict[str, Any]]:
        """The global limits this process enforces (heartbeats: ``rabbitq_limits``)."""
        return self.limits.declarations() if self.limits is not None else []

    @property
    def publisher(self) -> AsyncPublisher:
        return self._publisher

    @property
    def processed(self) -> int:
        """Tasks started since this process began (a heartbeat's ``processed``)."""
        return self.pipeline.started

    # -- what the health reports read (``health.py``) ---------------------------------------

    @property
    def stopping(self) -> bool:
        """Stopping, or recycling: no longer taking new work (the limits and the pipeline
        ask it too)."""
        return self._stopping or self.recycler.requested.is_set()

    @property
    def connected(self) -> bool:
        """The connection is open now: not before the first, nor while aio-pika reconnects
        (a robust connection is "closed" only once closed for good, so ask its transport)."""
        connection = self._connection
        if connection is None or connection.is_closed:
            return False
        transport = connection.transport
        return transport is not None and not transport.connection.is_closed

    def consuming_queues(self) -> frozenset[str]:
        """The queues with a consumer on an open channel now."""
        return frozenset(
            queue for queue, (underlay, _tag) in self._consumers.items() if not underlay.is_closed
        )

    # -- lifecycle --------------------------------------------------------------------------

    async def connect(self) -> AbstractRobustConnection:
        """Connect, retrying with backoff (and saying so) while the broker is not up yet."""
        delay = CONNECT_BACKOFF_FIRST
        while True:
            # Of several nodes, each (re)connect tries them in turn (aio_connection.py).
            connection = robust_connection(
                self.app.broker_url, name=f"rabbitq-worker-{self.hostname}", what="the worker"
            )
            try:
                await connection.connect()
                return connection
            except BaseException as exc:
                # Closed whatever happened: a robust connection cancelled mid-handshake would
                # otherwise keep reconnecting on its own, and the loop would never finish.
                with contextlib.suppress(Exception):
                    await asyncio.shield(connection.close())
                if not isinstance(exc, CONNECTION_EXCEPTIONS):
                    raise
                failure = connection_failure(
                    connection.failures or [(connection.target.endpoint, exc)], "the worker"
                )
                if isinstance(failure, BrokerTlsError):
                    # Waiting does not mend a certificate: say so and stop.
                    raise failure from exc
                log.warning("broker not reachable (%s); retrying in %.1fs", failure, delay)
                await asyncio.sleep(delay)
                delay = min(CONNECT_BACKOFF_MAX, delay * 2)

    async def start(self) -> None:
        """Connect, declare the queues, and begin consuming."""
        self._connection = connection = await self.connect()
        await declare_task_exchange(connection)
        # Retries and re-delays go through the levels.
        await declare_delay_levels(connection, self.app.topology.delay_queue_type)
        if self.app.topology.event_history is not None:
            await self._declare_event_history(connection, self.app.topology.event_history)
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
        # The tasks' own publishes (adelay inside a task) and their task-sent events share it.
        self.app.use_async_publisher(self._publisher)
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
        # Every revoke stored before now is known before the first task arrives.
        await declare_revocation_log(connection, self.app.revocations_kept_for)
        self._revocation_log = RevocationFollower(
            connection, self._publisher, self.revocations.apply
        )
        await self._revocation_log.start()
        self._mailbox = Mailbox(self.node, connection, self._publisher)
        await self._mailbox.start()
        if self.limits is not None:
            await self.limits.start(connection, self.run_delivery)
            for name in self.limits.queues_to_consume():
                # At most ``concurrency`` waiting for a token at once: never en masse.
                await self._open_consumer(connection, name, prefetch=self.concurrency)
        for name in self.queues:
            await self._open_consumer(connection, name)
        log.info(
            "worker %s (pid %d) consuming %s (concurrency %d, prefetch %d, %d tasks registered%s)",
            self.nodename,
            os.getpid(),
            ", ".join(self.queues),
            self.concurrency,
            self.prefetch,
            len(self.app.tasks),
            ", task events on" if self.task_events else "",
        )
        await self.middleware.emit("worker_start", self)

    async def _open_consumer(
        self, connection: AbstractRobustConnection, name: str, prefetch: int | None = None
    ) -> None:
        # One channel per queue: prefetch is per channel, and a channel error on one
        # queue does not stop the others.
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=prefetch or self.prefetch)  # restored on reconnect
        await self._consume(channel, name)
        # After a reconnect aio-pika reopens the channel; consume again on the new one.
        channel.reopen_callbacks.add(partial(self._consume_again, name=name))

    async def add_queue(self, name: str) -> None:
        """Consume ``name`` too (remote control's add_consumer); declared if missing."""
        assert self._connection is not None
        await ensure_queue(self._connection, self.app.topology.queue(name))
        self.queues = (*self.queues, name)
        await self._open_consumer(self._connection, name)
        log.info("consuming %s too (remote control)", name)

    async def cancel_queue(self, name: str) -> bool:
        """Stop consuming ``name`` (cancel_consumer): what it delivered still runs and acks."""
        if name not in self.queues or name not in self._consumers:
            return False
        self.queues = tuple(queue for queue in self.queues if queue != name)
        underlay, tag = self._consumers.pop(name)
        await asyncio.wait_for(underlay.basic_cancel(tag), BROKER_CALL_TIMEOUT)
        log.info("no longer consuming %s (remote control)", name)
        return True

    def send_heartbeat(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.beat_now(self)

    async def _declare_event_history(
        self, connection: AbstractRobustConnection, history: EventHistory
    ) -> None:
        """The history is a view: a stream kept with another retention than the routing file
        now says is reported, and the worker runs on (``rabbitq topology apply`` refuses)."""
        try:
            await declare_event_history(connection, history)
        except TopologyConflictError as exc:
            log.error("event history left as it is: %s", exc)

    async def _consume(self, channel: AbstractRobustChannel, queue: str) -> None:
        # Consuming on aiormq's channel directly: aio-pika's message object and its extra task
        # per delivery cost more than the rest of a no-op task's handling.
        underlay = await channel.get_underlay_channel()
        ok = await underlay.basic_consume(
            queue, self._make_handler(queue), no_ack=False, arguments=self._arguments(queue)
        )
        assert ok.consumer_tag is not None
        self._consumers[queue] = (underlay, ok.consumer_tag)
        if underlay not in self._watched:
            self._watched.add(underlay)
            underlay.on_consumer_cancel_callbacks.add(
                partial(self._on_cancelled, channel=channel, queue=queue)
            )
            underlay.closing.add_done_callback(
                partial(self._on_channel_closed, channel=underlay, queue=queue)
            )

    def _arguments(self, queue: str) -> dict[str, Any] | None:
        """Ask for our consumer timeout per consumer where RabbitMQ takes it: quorum queues,
        from 4.3 (older brokers ignore the argument; 4.3 refuses it on classic queues, which
        it no longer times out at all)."""
        timeout = self.app.consumer_timeout
        if timeout is None or self.app.topology.queue(queue).type != "quorum":
            return None
        return {"x-consumer-timeout": int(timeout * 1000)}

    async def _consume_again(self, channel: AbstractRobustChannel, *, name: str) -> None:
        limit_queues = self.limits.queues_to_consume() if self.limits is not None else ()
        if not self._stopping and (name in self.queues or name in limit_queues):
            await self._consume(channel, name)

    async def _on_cancelled(
        self, frame: Any, *, channel: AbstractRobustChannel, queue: str
    ) -> None:
        """The broker cancelled our consumer: the queue was deleted, or (RabbitMQ 4.3+) a
        delivery outlived the consumer timeout and went back to the queue. Consume again,
        on a task of its own (this runs in the channel's frame reader).

        Runs of the cancelled consumer's deliveries go on: a deleted queue's messages are
        gone, and those runs are all that is left of them; after a 4.3 timeout, though, they
        run beside their redelivered copies (stopping them needs the pipeline to drop a run
        without concluding it, and a way to tell the two causes apart)."""
        current = self._consumers.get(queue)
        if self._stopping or current is None or current[1] != frame.consumer_tag:
            return
        log.error(
            "the broker cancelled this worker's consumer on %s (queue deleted, or a delivery "
            "held past the consumer timeout: see App(consumer_timeout=)); consuming again",
            queue,
        )
        self._pending.add(task := asyncio.create_task(self._consume_after_cancel(channel, queue)))
        task.add_done_callback(self._pending.discard)

    async def _consume_after_cancel(self, channel: AbstractRobustChannel, queue: str) -> None:
        delay = CONNECT_BACKOFF_FIRST
        while not self._stopping and not channel.is_closed:
            try:
                await self._redeclare(queue)  # deleted: declared again, with its dead letters
                await self._consume(channel, queue)
                log.info("consuming %s again", queue)
                return
            except Exception as exc:
                log.warning("could not consume %s again (%s); retrying in %.1fs", queue, exc, delay)
                await asyncio.sleep(delay)
                delay = min(CONNECT_BACKOFF_MAX, delay * 2)

    def _on_channel_closed(
        self, closing: asyncio.Future[Any], *, channel: aiormq.abc.AbstractChannel, queue: str
    ) -> None:
        """A channel the broker closed for an overdue ack (RabbitMQ before 4.3): every
        delivery on it went back to the queue, and the operator is told why.

        aiormq cancels the channel's handlers in the same step that resolves ``closing``, and
        this callback comes after they have unwound: an ``async def`` run stopped with its
        handler; a run in a thread was interrupted by the pipeline as the handler unwound.
        Runs still known (none, as aiormq behaves today) are stopped here.
        """
        error = None if closing.cancelled() else closing.exception()
        if not isinstance(error, aiormq.exceptions.ChannelPreconditionFailed):
            return
        if "timed out" not in str(error) and "timeout" not in str(error):
            return
        stopped = self.pipeline.interrupt_runs_on(channel)
        log.error(
            "the broker closed the channel consuming %s: a delivery stayed unacked past the "
            "broker's consumer_timeout (%s). Its deliveries went back to the queue to be "
            "delivered again%s. App(consumer_timeout=%s) must not exceed the broker's "
            "consumer_timeout",
            queue,
            error,
            f"; {stopped} run(s) still going on it were stopped" if stopped else "",
            self.app.consumer_timeout,
        )

    async def stop(self, timeout: float | None = None) -> None:
        """Stop consuming, let running tasks finish and ack, then close."""
        self._stopping = True
        if self.limits is not None:
            self.limits.stop_waiting()
        for queue, (underlay, tag) in self._consumers.items():
            # Bounded: with the broker gone, the call would wait for it forever.
            try:
                await asyncio.wait_for(underlay.basic_cancel(tag), BROKER_CALL_TIMEOUT)
            except Exception as exc:  # connection may already be gone
                log.debug("cancel of %s failed: %s", queue, exc)
        self._consumers.clear()
        for part in (self._mailbox, self._revocation_log):
            if part is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(part.close(), BROKER_CALL_TIMEOUT)
        if self._coordinator is not None:
            await self._coordinator.stop()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            log.warning(
                "%d task(s) still running at shutdown; the broker will redeliver them",
                self._in_flight,
            )
        if self.limits is not None:
            await self.limits.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._acks.flush(), BROKER_CALL_TIMEOUT)
        self.executor.shutdown()
        await self.middleware.emit("worker_stop", self)
        self.events.flush()  # the last task events, before the publisher closes
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._publisher.close(), BROKER_CALL_TIMEOUT)
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._connection.close(), BROKER_CALL_TIMEOUT)
        log.info(
            "worker %s stopped: %d succeeded, %d failed, %d retried, %d dead-lettered%s",
            self.nodename,
            self.stats.succeeded,
            self.stats.failed,
            self.stats.retried,
            self.stats.dead_lettered,
            f"; {self.events.dropped} event(s) dropped" if self.events.dropped else "",
        )

    # -- one delivery -----------------------------------------------------------------------

    def _make_handler(self, queue: str) -> Any:
        async def handle(message: aiormq.abc.DeliveredMessage) -> None:
            try:
                delivery = Delivery.of(queue, message)
            except Exception:  # unreadable frame: the broker keeps it unacked
                log.exception("could not read a delivery from %s", queue)
                return
            if self.limits is not None and delivery.via == RETURNED_QUEUE:
                self._acks.delivered(delivery)
                await self.limits.send_home(delivery)
                return
            await self.run_delivery(delivery)

        return handle

    async def run_delivery(self, delivery: Delivery) -> None:
        """One delivery through the pipeline: from a consumer, or a waiting copy a limit's
        slot passed to (``limits.py``)."""
        self._in_flight += 1
        self._idle.clear()
        try:
            self._acks.delivered(delivery)
            await self.pipeline.handle(delivery)
            self._unsettled_failures = 0
        except Exception:
            await self._requeue_unsettled(delivery)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

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
