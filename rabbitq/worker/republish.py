"""Everything the worker publishes about a delivery instead of simply acking it.

Each action publishes, waits for the broker's confirm, and only then acks the delivery, so a
worker killed at any point leaves either the original (redelivered) or its successor:

* ``dead_letter`` — into ``<queue>.dead`` with the reason (``dead_letters.py``);
* ``retry`` — the next attempt through the delay levels to ``queue.<queue>`` only;
* ``later`` — a message whose ``eta`` is still ahead (a Celery producer's countdown, or clock
  skew) goes back through the delay levels instead of waiting in worker memory;
* ``recount`` — classic queues: a redelivered message carries its count on a fresh copy;
* ``hand_back`` — at shutdown, a message that never started goes back to its queue with its
  count unchanged (a nack would count as a redelivery: see ``redelivery.py``);
* ``park`` — a run that did not stop at its hard time limit: a marked copy waits in the
  delay levels until the process running it is gone (``timeouts.STOPPED_HEADER``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Protocol

from rabbitq import dead_letters
from rabbitq.amqp.contract import Publishes as Publisher
from rabbitq.delays import QUEUE, delay_ms_until, delayed_route
from rabbitq.message import Envelope, TaskMessage, utcnow
from rabbitq.redelivery import REDELIVERY_COUNT_HEADER, redeliveries_so_far
from rabbitq.retries import retry_envelope
from rabbitq.signing import Signer
from rabbitq.timeouts import STOPPED_HEADER
from rabbitq.topology import Topology
from rabbitq.worker.delivery import Delivery

log = logging.getLogger("rabbitq.worker")


class Acker(Protocol):
    def ack(self, delivery: Delivery) -> None: ...


class Republisher:
    def __init__(
        self,
        publisher: Publisher,
        acks: Acker,
        topology: Topology,
        clock: Callable[[], dt.datetime] = utcnow,
        signer: Signer | None = None,
    ) -> None:
        self.publisher = publisher
        self.acks = acks
        self.topology = topology
        self.clock = clock
        self.signer = signer

    def dead_letter_queue(self, delivery: Delivery) -> str:
        return self.topology.queue(delivery.queue).dead_letter_queue

    async def dead_letter(
        self,
        delivery: Delivery,
        reason: str,
        error: BaseException,
        task_message: TaskMessage | None = None,
        *,
        followup_error: BaseException | None = None,
    ) -> str:
        """Publish the dead letter (confirmed), then ack; returns the dead-letter queue."""
        dead = dead_letters.dead_letter_envelope(
            delivery.envelope,
            reason=reason,
            queue=delivery.queue,
            routing_key=delivery.original_routing_key,
            exchange=delivery.exchange,
            exception=error,
            attempts=task_message.retries + 1 if task_message else None,
            followup_error=followup_error,
        )
        target = self.dead_letter_queue(delivery)
        await self.publisher.publish(target, dead, exchange="")
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
        self.acks.ack(delivery)
        return target

    async def retry(
        self, delivery: Delivery, task_message: TaskMessage, retries: int, eta: dt.datetime
    ) -> None:
        successor = self._signed(retry_envelope(delivery.envelope, retries, eta))
        await self._publish_at(delivery.queue, successor, eta)
        log.info("task %s[%s] retry %d at %s", task_message.task, task_message.id, retries, eta)
        self.acks.ack(delivery)

    async def later(self, delivery: Delivery, task_message: TaskMessage, eta: dt.datetime) -> None:
        successor = self._signed(retry_envelope(delivery.envelope, task_message.retries, eta))
        await self._publish_at(delivery.queue, successor, eta)
        log.info(
            "task %s[%s] is due at %s; sent through the delay levels",
            task_message.task,
            task_message.id,
            eta.isoformat(),
        )
        self.acks.ack(delivery)

    async def recount(self, delivery: Delivery, count: int, limit: int) -> None:
        await self._copy_back(delivery, count)
        log.warning(
            "message %s redelivered (%d of at most %d redeliveries)",
            delivery.envelope.message_id,
            count,
            limit,
        )
        self.acks.ack(delivery)

    async def hand_back(self, delivery: Delivery, *, quorum: bool) -> None:
        count = redeliveries_so_far(delivery.redelivered, delivery.envelope.headers, quorum=quorum)
        await self._copy_back(delivery, count)
        self.acks.ack(delivery)

    async def park(
        self, delivery: Delivery, task_message: TaskMessage, eta: dt.datetime, note: str
    ) -> None:
        successor = _same_message(delivery)
        successor.headers[STOPPED_HEADER] = note
        await self._publish_at(delivery.queue, self._signed(successor), eta)
        log.warning(
            "task %s[%s] parked in the delay levels until %s, when its stuck run has ended",
            task_message.task,
            task_message.id,
            eta.isoformat(),
        )
        self.acks.ack(delivery)

    def _signed(self, successor: Envelope) -> Envelope:
        """A new eta needs a new signature. Only messages whose signature was checked come
        here (retries, ``later``, parked runs); a copy sent back unchecked (``recount``,
        ``hand_back``) keeps the signature it came with, and a dead letter is never signed,
        so a forged message cannot come back signed."""
        return successor if self.signer is None else self.signer.sign(successor)

    async def _copy_back(self, delivery: Delivery, count: int) -> None:
        """The same message (retries and eta kept) back to its queue, carrying ``count``: its
        signed fields unchanged, so its signature (if any) still holds."""
        successor = _same_message(delivery)
        if count:
            successor.headers[REDELIVERY_COUNT_HEADER] = count
        await self.publisher.publish(delivery.queue, successor, exchange="")

    async def _publish_at(self, queue: str, envelope: Envelope, eta: dt.datetime) -> None:
        """To ``queue`` only (not every queue its routing key matches), at ``eta``."""
        delay_ms = delay_ms_until(eta, self.clock())
        if delay_ms <= 0:
            await self.publisher.publish(queue, envelope, exchange="")
            return
        route = delayed_route(delay_ms, QUEUE, queue)
        await self.publisher.publish(route.routing_key, envelope, exchange=route.exchange)


def _same_message(delivery: Delivery) -> Envelope:
    """A fresh copy of the delivered message: retries and eta kept, counts dropped."""
    successor = retry_envelope(delivery.envelope, _retries_of(delivery.envelope), None)
    successor.headers["eta"] = delivery.envelope.headers.get("eta")
    stopped = delivery.envelope.headers.get(STOPPED_HEADER)
    if stopped is not None:  # a parked copy recounted or handed back stays concluded
        successor.headers[STOPPED_HEADER] = stopped
    return successor


def _retries_of(envelope: Envelope) -> int:
    value = envelope.headers.get("retries", 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
