"""The worker's consumer: receive a task message, run it, ack it. Nothing is lost on the way.

Per delivery, in order:

1. poison check — redelivered too often? dead-letter it (see ``redelivery.py``);
2. decode — not a valid task message? dead-letter ``undecodable``;
3. expiry — ``expires`` in the past? dead-letter ``expired``;
4. lookup — unknown task name? dead-letter ``unknown-task``;
5. arguments — do not fit the signature? dead-letter ``bad-arguments``;
6. eta — still more than a second ahead? back through the delay levels (no worker memory);
7. run — ``self.retry()`` or an ``autoretry_for`` error? publish the next attempt; any other
   error? dead-letter ``task-failed`` with the traceback;
8. ack — only now, after the task returned or its successor was confirmed by the broker
   (``republish.py``).

Whatever happens to the process in between, the broker still holds the unacked message and
redelivers it: at-least-once, so tasks must tolerate running twice (use the task id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

import aio_pika
import aiormq.exceptions
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection

from rabbitq import dead_letters
from rabbitq.amqp.aio import AsyncPublisher
from rabbitq.amqp.declare import (
    declare_chord_queues,
    declare_delay_levels,
    declare_queue,
    declare_task_exchange,
    ensure_queue,
)
from rabbitq.app import App
from rabbitq.canvas import CHORD_OPTION
from rabbitq.delays import delay_ms_until
from rabbitq.errors import (
    BrokerConnectionError,
    MessageError,
    RabbitqError,
    ResultEncodeError,
    Retry,
    TaskArgumentsError,
    UnsupportedMessageError,
)
from rabbitq.message import TaskMessage, decode_task, utcnow
from rabbitq.redelivery import judge_redelivery
from rabbitq.results.meta import check_encodable
from rabbitq.task import Task, TaskRequest
from rabbitq.worker.acks import AckBatcher
from rabbitq.worker.coordinator import ChordCoordinator
from rabbitq.worker.delivery import Delivery
from rabbitq.worker.executor import Executor
from rabbitq.worker.followups import (
    Followups,
    followup_serializer,
    result_serializer,
    stores_result,
)
from rabbitq.worker.republish import Republisher

log = logging.getLogger("rabbitq.worker")

# A message due within this many milliseconds waits in the worker; a later one goes back
# through the delay levels so that it costs the worker no memory and no prefetch slot.
HOLD_AT_MOST_MS = 1000
BROKER_CALL_TIMEOUT = 5.0  # seconds, for the calls of an orderly shutdown


@dataclass
class WorkerStats:
    succeeded: int = 0
    failed: int = 0


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
        self._slots = asyncio.Semaphore(concurrency)
        self._acks = AckBatcher()
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self._connection: AbstractRobustConnection | None = None
        self._consumers: dict[str, tuple[aiormq.abc.AbstractChannel, str]] = {}
        self._publisher = AsyncPublisher(app.broker_url, publish_timeout=app.publish_timeout)
        self._followups = Followups(app, self._publisher)
        self._republish = Republisher(
            self._publisher, self._acks, app.topology, on_give_up=self._tell_failure
        )
        self.coordinate_chords = coordinate_chords
        self._coordinator: ChordCoordinator | None = None

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, declare the queues, and begin consuming."""
        try:
            self._connection = await aio_pika.connect_robust(
                self.app.broker_url,
                client_properties={"connection_name": f"rabbitq-worker-{self.hostname}"},
            )
        except (OSError, aiormq.exceptions.AMQPError) as exc:
            raise BrokerConnectionError(f"worker cannot connect to the broker: {exc}") from exc
        await declare_task_exchange(self._connection)
        # Retries and re-delays go through the levels.
        await declare_delay_levels(self._connection, self.app.topology.delay_queue_type)
        configured = set(self.app.topology.configured_queue_names())
        for name in self.queues:
            spec = self.app.topology.queue(name)
            # A queue the routing file describes is declared exactly as described (a conflict
            # is reported); any other queue is created with defaults only if missing.
            if name in configured:
                await declare_queue(self._connection, spec)
            else:
                await ensure_queue(self._connection, spec)
        await self._publisher.connect()
        if self.coordinate_chords:
            self._coordinator = ChordCoordinator(
                self.app,
                self._connection,
                self._publisher,
                self._followups,
                fold_after=self.app.chord_fold_after,
                fold_parts=self.app.chord_fold_parts,
            )
            await self._coordinator.start()
        else:
            await declare_chord_queues(self._connection)  # members report there
        for name in self.queues:
            # One channel per queue: prefetch is per channel, and a channel error on one
            # queue does not stop the others.
            channel = await self._connection.channel()
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
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._publisher.close(), BROKER_CALL_TIMEOUT)
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._connection.close(), BROKER_CALL_TIMEOUT)
        log.info(
            "worker %s stopped: %d succeeded, %d failed, %d dead-lettered",
            self.hostname,
            self.stats.succeeded,
            self.stats.failed,
            self._republish.dead_lettered,
        )

    # -- one delivery -----------------------------------------------------------------------

    def _make_handler(self, queue: str) -> Any:
        async def handle(message: aiormq.abc.DeliveredMessage) -> None:
            self._in_flight += 1
            self._idle.clear()
            delivery = Delivery.of(queue, message)
            self._acks.delivered(delivery.channel, delivery.tag)
            try:
                await self._handle(delivery)
            except Exception:
                # E.g. a republish failed. The worker lives on and the message goes back to
                # the queue (after a pause, so a persistent fault does not spin).
                log.exception("could not handle a message from %s; requeueing it", queue)
                await asyncio.sleep(1.0)
                await self._acks.nack(delivery.channel, delivery.tag, requeue=True)
            finally:
                self._in_flight -= 1
                if self._in_flight == 0:
                    self._idle.set()

        return handle

    async def _handle(self, delivery: Delivery) -> None:
        limit = self.app.redelivery_limit
        verdict = judge_redelivery(delivery.redelivered, delivery.envelope.headers, limit)
        if verdict.action == "dead-letter":
            error = RabbitqError(
                f"delivered {verdict.redeliveries + 1} times without finishing "
                f"(limit: {limit} redeliveries); it may crash workers"
            )
            await self._republish.dead_letter(delivery, dead_letters.REASON_REDELIVERY_LIMIT, error)
            return
        if verdict.action == "recount":
            await self._republish.recount(delivery, verdict.redeliveries, limit)
            return
        try:
            task_message = decode_task(delivery.envelope)
        except MessageError as exc:
            await self._republish.dead_letter(delivery, exc.reason, exc)
            return
        if task_message.is_expired():
            assert task_message.expires is not None
            error = RabbitqError(f"expired at {task_message.expires.isoformat()}")
            await self._republish.dead_letter(
                delivery, dead_letters.REASON_EXPIRED, error, task_message
            )
            return
        if task_message.chord is not None:
            # Celery joins a chord in its result backend, from the worker that runs each
            # member; a member run here would leave the chord waiting for ever.
            error = UnsupportedMessageError(
                f"task {task_message.task} is a member of a Celery chord ('chord' in the "
                "message); rabbitq workers cannot join Celery's chords: run the chord on Celery "
                "workers, or build it with rabbitq.chord"
            )
            await self._republish.dead_letter(delivery, error.reason, error, task_message)
            return
        try:
            task = self.app.get_task(task_message.task)
            task.check_arguments(task_message.args, task_message.kwargs)
        except MessageError as exc:
            await self._republish.dead_letter(delivery, exc.reason, exc, task_message)
            return
        except TypeError as exc:
            error = TaskArgumentsError(f"arguments do not fit {task.name}{task.parameters}: {exc}")
            await self._republish.dead_letter(delivery, error.reason, error, task_message)
            return
        if task_message.eta is not None:
            wait_ms = delay_ms_until(task_message.eta, utcnow())
            if wait_ms > HOLD_AT_MOST_MS:
                await self._republish.later(delivery, task_message, task_message.eta)
                return
            if wait_ms > 0:  # never run early; a short wait is cheaper than another cascade
                await asyncio.sleep(wait_ms / 1000)
        async with self._slots:
            if self._stopping:
                # Shutting down: this one has not started, so hand it straight back.
                await self._acks.nack(delivery.channel, delivery.tag, requeue=True)
                return
            await self._run(delivery, task, task_message)

    def _check_result(self, task: Task, message: TaskMessage, value: Any) -> None:
        # A value that cannot travel is the task's failure, found here rather than at the
        # caller (and never a worker stuck requeueing a message it cannot follow up).
        if message.chain or message.callbacks:
            check_encodable(message.id, value, followup_serializer(self.app, message.serializer))
        if CHORD_OPTION in message.embed_extras:  # parts travel in the app's serializer
            check_encodable(message.id, value, self.app.serializer)
        if stores_result(self.app, task, message):
            check_encodable(message.id, value, result_serializer(self.app, message.serializer))

    async def _retry(
        self, delivery: Delivery, task: Task, message: TaskMessage, retry: Retry
    ) -> None:
        await self._followups.retrying(task, message, retry.exc or retry)
        await self._republish.retry(delivery, task, message, retry)

    async def _tell_failure(
        self, delivery: Delivery, message: TaskMessage | None, error: BaseException
    ) -> None:
        if message is None:  # not decoded yet (redelivery limit): decode what we can
            try:
                message = decode_task(delivery.envelope)
            except MessageError:
                return
        task = self.app.tasks.get(message.task)
        await self._followups.failed(task, message, error)

    async def _run(self, delivery: Delivery, task: Task, task_message: TaskMessage) -> None:
        request = TaskRequest(
            id=task_message.id,
            task=task.name,
            args=task_message.args,
            kwargs=task_message.kwargs,
            retries=task_message.retries,
            root_id=task_message.root_id,
            parent_id=task_message.parent_id,
            group=task_message.group,
            queue=delivery.queue,
            routing_key=delivery.original_routing_key,
            redelivered=delivery.redelivered,
            eta=task_message.eta,
            headers=task_message.headers,
            reply_to=task_message.reply_to,
        )
        started = time.perf_counter()
        await self._followups.started(task, task_message)
        try:
            value = await self.executor.run(task, request)
            self._check_result(task, task_message, value)
        except Retry as retry:
            await self._retry(delivery, task, task_message, retry)
            return
        except Exception as exc:
            if not isinstance(exc, ResultEncodeError) and task.retry_policy.retries_automatically(
                exc
            ):
                await self._retry(delivery, task, task_message, Retry(exc))
                return
            self.stats.failed += 1
            await self._republish.dead_letter(
                delivery, dead_letters.REASON_TASK_FAILED, exc, task_message
            )
            return
        await self._followups.succeeded(task, task_message, value)
        self.stats.succeeded += 1
        if log.isEnabledFor(logging.INFO):
            log.info(
                "task %s[%s] succeeded in %.4fs",
                task.name,
                task_message.id,
                time.perf_counter() - started,
            )
        self._acks.ack(delivery.channel, delivery.tag)
