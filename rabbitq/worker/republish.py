"""Everything the worker publishes about a delivery instead of simply acking it.

Each action publishes, waits for the broker's confirm, and only then acks the delivery, so a
worker killed at any point leaves either the original (redelivered) or its successor:

* ``dead_letter`` — into ``<queue>.dead`` with the reason (``dead_letters.py``);
* ``retry`` — the next attempt through the delay levels to ``queue.<queue>`` only, or
  ``retries-exhausted`` into ``<queue>.dead`` past ``max_retries``;
* ``later`` — a message whose ``eta`` is still ahead (a Celery producer's countdown, or clock
  skew) goes back through the delay levels instead of waiting in worker memory;
* ``recount`` — classic queues: a redelivered message carries its count on a fresh copy.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable

from rabbitq import dead_letters
from rabbitq.amqp.aio import AsyncPublisher
from rabbitq.delays import QUEUE, delay_ms_until, delayed_route
from rabbitq.errors import Retry
from rabbitq.message import Envelope, TaskMessage, utcnow
from rabbitq.redelivery import REDELIVERY_COUNT_HEADER
from rabbitq.retries import retry_envelope
from rabbitq.task import Task
from rabbitq.topology import Topology
from rabbitq.worker.acks import AckBatcher
from rabbitq.worker.delivery import Delivery

log = logging.getLogger("rabbitq.worker")


GiveUpHook = Callable[[Delivery, TaskMessage | None, BaseException], Awaitable[None]]


class Republisher:
    def __init__(
        self,
        publisher: AsyncPublisher,
        acks: AckBatcher,
        topology: Topology,
        on_give_up: GiveUpHook | None = None,
    ) -> None:
        self.publisher = publisher
        self.acks = acks
        self.topology = topology
        # Told before a message is dead-lettered: its errbacks, result and chord must hear.
        self.on_give_up = on_give_up
        self.dead_lettered = 0
        self.retried = 0

    async def dead_letter(
        self,
        delivery: Delivery,
        reason: str,
        error: BaseException,
        task_message: TaskMessage | None = None,
    ) -> None:
        if self.on_give_up is not None:
            await self.on_give_up(delivery, task_message, error)
        dead = dead_letters.dead_letter_envelope(
            delivery.envelope,
            reason=reason,
            queue=delivery.queue,
            routing_key=delivery.original_routing_key,
            exchange=delivery.exchange,
            exception=error,
            attempts=task_message.retries + 1 if task_message else None,
        )
        target = self.topology.queue(delivery.queue).dead_letter_queue
        await self.publisher.publish(target, dead, exchange="")
        self.dead_lettered += 1
        what = (
            f"{task_message.task}[{task_message.id}]"
            if task_message
            else f"message {delivery.envelope.message_id or '(no id)'}"
        )
        log.warning(
            "%s from %s dead-lettered to %s: %s: %s: %s",
            what,
            delivery.queue,
            target,
            reason,
            type(error).__name__,
            error,
        )
        self.acks.ack(delivery.channel, delivery.tag)

    async def retry(
        self, delivery: Delivery, task: Task, task_message: TaskMessage, request: Retry
    ) -> None:
        policy = task.retry_policy
        cause = request.exc if request.exc is not None else request
        if policy.exhausted(task_message.retries, request.max_retries):
            await self.dead_letter(
                delivery, dead_letters.REASON_RETRIES_EXHAUSTED, cause, task_message
            )
            return
        eta = request.eta if isinstance(request.eta, dt.datetime) else None
        if eta is None:
            countdown = request.countdown
            if countdown is None:
                countdown = policy.countdown(task_message.retries)
            eta = utcnow() + dt.timedelta(seconds=max(0.0, countdown))
        successor = retry_envelope(delivery.envelope, task_message.retries + 1, eta)
        await self._publish_at(delivery.queue, successor, eta)
        self.retried += 1
        log.info(
            "task %s[%s] retry %d at %s: %s: %s",
            task.name,
            task_message.id,
            task_message.retries + 1,
            eta.isoformat(),
            type(cause).__name__,
            cause,
        )
        self.acks.ack(delivery.channel, delivery.tag)

    async def later(self, delivery: Delivery, task_message: TaskMessage, eta: dt.datetime) -> None:
        successor = retry_envelope(delivery.envelope, task_message.retries, eta)
        await self._publish_at(delivery.queue, successor, eta)
        log.info(
            "task %s[%s] is due at %s; sent through the delay levels",
            task_message.task,
            task_message.id,
            eta.isoformat(),
        )
        self.acks.ack(delivery.channel, delivery.tag)

    async def recount(self, delivery: Delivery, count: int, limit: int) -> None:
        successor = retry_envelope(delivery.envelope, _retries_of(delivery.envelope), None)
        successor.headers["eta"] = delivery.envelope.headers.get("eta")
        successor.headers[REDELIVERY_COUNT_HEADER] = count
        await self.publisher.publish(delivery.queue, successor, exchange="")
        log.warning(
            "message %s redelivered (%d of at most %d redeliveries)",
            delivery.envelope.message_id,
            count,
            limit,
        )
        self.acks.ack(delivery.channel, delivery.tag)

    async def _publish_at(self, queue: str, envelope: Envelope, eta: dt.datetime) -> None:
        """To ``queue`` only (not every queue its routing key matches), at ``eta``."""
        delay_ms = delay_ms_until(eta, utcnow())
        if delay_ms <= 0:
            await self.publisher.publish(queue, envelope, exchange="")
            return
        route = delayed_route(delay_ms, QUEUE, queue)
        await self.publisher.publish(route.routing_key, envelope, exchange=route.exchange)


def _retries_of(envelope: Envelope) -> int:
    value = envelope.headers.get("retries", 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
