"""Limits at the worker's admission step: a middleware whose ``admit`` decides when a limited
task may take a worker slot (``docs/limits.md``; the broker side is ``amqp/limit_queues.py``).

* **concurrency** and **mutex**: the task takes a slot of its scope (the limit, or the limit
  and its key). A slot free: it runs, and when it is over the slot passes to the oldest copy
  waiting on that scope, if any, else is given back. None free: a copy of the task goes to
  the scope's waiting queue (confirmed), the delivery is acked, and the slots are tried once
  more, so that a slot given back meanwhile is not missed. Every few seconds each worker also
  looks at the scopes it knows with copies waiting and slots free (a holder died);
* **rate**: a fresh task is parked at once in the rate's waiting queue, which every worker
  that knows the limit consumes, at most ``concurrency`` at a time: each of those waits for
  a token (no worker slot held), then runs;
* ``rate_limit`` (Celery's, per process): the task waits here for the process's own bucket.

Nothing waits in a worker slot, nothing is dropped (a copy is confirmed before its original
is acked), and nothing starts early. The admission's own broker calls are retried while the
delivery's channel lives; once it is gone the broker has the message back.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any

from aio_pika.abc import AbstractRobustConnection

from rabbitq.amqp.contract import Publishes
from rabbitq.amqp.limit_queues import Drain, Lease, Refiller, SlotLocks, TokenFeed
from rabbitq.errors import Deferred, UnroutableError
from rabbitq.limits.bucket import RefillCredit, TokenBucket
from rabbitq.limits.names import ORIGIN_HEADER, RETURNED_QUEUE, scope_name, waiting_queue
from rabbitq.limits.spec import Concurrency, Mutex, SlotLimit, TaskLimits, declaration, key_of
from rabbitq.limits.spec import call_parameters as caller_view
from rabbitq.middleware import Middleware, TaskContext
from rabbitq.worker.delivery import Delivery
from rabbitq.worker.republish import Acker

log = logging.getLogger("rabbitq.limits")

SWEEP_EVERY = 2.0  # seconds between looks at scopes with copies waiting and slots free
KEY_REMEMBERED = 600.0  # seconds a mutex key is swept after this process last saw it
RETRY_FIRST = 0.2  # seconds before an admission's failed broker call is tried again...
RETRY_MAX = 10.0  # ...doubling up to this

RunDelivery = Callable[[Delivery], Awaitable[None]]


@dataclasses.dataclass
class _Scope:
    slots: int
    keyed: bool
    seen: float = 0.0  # time.monotonic()


class Limits(Middleware):
    def __init__(
        self,
        found: Mapping[str, TaskLimits],
        publisher: Publishes,
        acks: Acker,
        *,
        concurrency: int,
        stopping: Callable[[], bool],
    ) -> None:
        self.found = dict(found)
        self.publisher = publisher
        self.acks = acks
        self.concurrency = concurrency
        self.stopping = stopping
        self.local = {
            name: TokenBucket(limits.local.per_second)
            for name, limits in self.found.items()
            if limits.local is not None
        }
        self.rates = {
            limits.rate.name: limits.rate for limits in self.found.values() if limits.rate
        }
        self.slot_limits = {
            limits.slot.name: limits.slot for limits in self.found.values() if limits.slot
        }
        self._scopes: dict[str, _Scope] = {
            scope_name(limit.name): _Scope(limit.n, keyed=False)
            for limit in self.slot_limits.values()
            if isinstance(limit, Concurrency)
        }
        # A copy taken from a waiting queue by the holder of one of its slots: the slot
        # passes to it (by channel and delivery tag).
        self._carried: dict[tuple[int, int], Lease] = {}
        self._locks: SlotLocks | None = None
        self._drain: Drain | None = None
        self._feeds: dict[str, TokenFeed] = {}
        self._run: RunDelivery | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._stopped = asyncio.Event()
        self.parked = 0  # copies this process put in waiting queues

    # -- the worker's side ------------------------------------------------------------------

    def declarations(self) -> list[dict[str, Any]]:
        limits = [*self.rates.values(), *self.slot_limits.values()]
        return [declaration(limit) for limit in sorted(limits, key=lambda limit: limit.name)]

    def queues_to_consume(self) -> list[str]:
        """Besides the task queues: each rate's waiting queue, and the returned copies."""
        queues = [waiting_queue(scope_name(name)) for name in self.rates]
        if any(isinstance(limit, Mutex) for limit in self.slot_limits.values()):
            queues.append(RETURNED_QUEUE)
        return queues

    async def start(self, connection: AbstractRobustConnection, run: RunDelivery) -> None:
        self._run = run
        self._locks = SlotLocks(connection, channels=min(self.concurrency, 8))
        self._drain = Drain(connection)
        channel = await connection.channel()
        for name in self.rates:
            await channel.declare_queue(waiting_queue(scope_name(name)), durable=True)
        if RETURNED_QUEUE in self.queues_to_consume():
            await channel.declare_queue(RETURNED_QUEUE, durable=True)
        await channel.close()
        for scope, known in self._scopes.items():
            await self._locks.declare_waiting(scope, keyed=known.keyed)
        for rate in self.rates.values():
            feed = TokenFeed(connection, rate)
            await feed.declare()
            self._feeds[rate.name] = feed
            credit = RefillCredit(rate.per_second, rate.burst)
            refiller = Refiller(connection, rate, credit.owed, credit.restart, credit.tick)
            self._spawn(refiller.run(self.stopping))
        if self._scopes or any(isinstance(x, Mutex) for x in self.slot_limits.values()):
            self._spawn(self._sweep())

    def stop_waiting(self) -> None:
        """The worker stops: tasks waiting for a token or their process's bucket go on to
        the pipeline at once, which hands them back unrun."""
        self._stopped.set()
        for feed in self._feeds.values():
            feed.wake_all()

    async def stop(self) -> None:
        self.stop_waiting()
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def send_home(self, delivery: Delivery) -> None:
        """A copy back from a long wait (``rabbitq.limits.returned``, which every worker with
        a mutex consumes, of whatever app) goes to the back of the queue it came from, where
        its own app's workers take it and admit it again; acked once that is confirmed. Its
        queue gone (unroutable): it is handled here, as a task of that queue (run, or
        dead-lettered as unknown)."""
        envelope = delivery.envelope
        headers = {name: value for name, value in envelope.headers.items()
                   if name != ORIGIN_HEADER}  # fmt: skip
        home = dataclasses.replace(envelope, headers=headers)

        async def publish_home() -> bool:
            try:
                await self.publisher.publish(delivery.queue, home, exchange="")
            except UnroutableError:
                return False
            return True

        try:
            sent = await self._retrying(delivery, "send a returned copy home", publish_home)
        except Deferred as exc:  # its channel closed: the broker has it back
            log.info("returned copy %s: %s", envelope.message_id, exc)
            return
        if sent:
            self.acks.ack(delivery)
            return
        log.warning(
            "returned copy %s: its queue %s is gone; handling it here",
            *(envelope.message_id, delivery.queue),
        )
        assert self._run is not None, "Limits.start() first"
        await self._run(delivery)

    # -- admission ----------------------------------------------------------------------------

    async def admit(self, context: TaskContext) -> None:
        limits = self.found.get(context.task.name)
        delivery = context.delivery
        carried = self._carried.pop((id(delivery.channel), delivery.tag), None)
        if limits is None:
            if carried is not None:  # another process's view of the limits: pass it on
                await self._pass_on(carried)
            return
        if limits.slot is not None:
            scope = self._scope_of(limits.slot, context)
            if carried is not None and carried.scope != scope:
                await self._pass_on(carried)
                carried = None
            lease = carried or await self._take(scope, delivery)
            if lease is None:
                await self._park(context, scope)  # raises Deferred
                return
            context.releases.append(partial(self._pass_on, lease))
        elif carried is not None:
            await self._pass_on(carried)
        if limits.rate is not None:
            rate_queue = waiting_queue(scope_name(limits.rate.name))
            if limits.slot is None and delivery.via != rate_queue:
                await self._park(context, scope_name(limits.rate.name))  # raises Deferred
                return
            if not await self._feeds[limits.rate.name].take():
                return  # stopping: the pipeline hands it back unrun
        if limits.local is not None:
            wait = self.local[context.task.name].take()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopped.wait(), wait)
        if delivery.channel.is_closed:
            raise Deferred("the delivery's channel closed while it waited: the broker has it")

    def _scope_of(self, limit: SlotLimit, context: TaskContext) -> str:
        if isinstance(limit, Concurrency):
            return scope_name(limit.name)
        task = context.task
        key = key_of(limit, caller_view(task.parameters, task.bind), context.message.args,
                     context.message.kwargs)  # fmt: skip
        scope = scope_name(limit.name, key)
        known = self._scopes.get(scope)
        if known is None:
            known = self._scopes[scope] = _Scope(limit.n, keyed=True)
        known.seen = time.monotonic()
        return scope

    async def _take(self, scope: str, delivery: Delivery) -> Lease | None:
        locks = self._locks
        assert locks is not None, "Limits.start() first"
        slots = self._scopes[scope].slots
        lease: Lease | None = await self._retrying(
            delivery, "take a slot", lambda: locks.try_take(scope, slots)
        )
        return lease

    async def _park(self, context: TaskContext, scope: str) -> None:
        """A copy to the scope's waiting queue, confirmed; then the original is acked."""
        delivery = context.delivery
        envelope = delivery.envelope
        copy = dataclasses.replace(
            envelope, headers={**envelope.headers, ORIGIN_HEADER: delivery.queue}
        )
        known = self._scopes.get(scope)
        keyed = known is not None and known.keyed
        locks = self._locks
        assert locks is not None

        async def put() -> None:
            try:
                await self.publisher.publish(waiting_queue(scope), copy, exchange="")
            except UnroutableError:
                # An idle key's queue expired (or was never declared here): declare, again.
                await locks.declare_waiting(scope, keyed=keyed)
                await self.publisher.publish(waiting_queue(scope), copy, exchange="")

        await self._retrying(delivery, "park", put)
        self.acks.ack(delivery)
        self.parked += 1
        if known is not None:
            # A slot given back between our try and the copy's arrival: take it now.
            lease = await locks.try_take(scope, known.slots)
            if lease is not None:
                self._spawn(self._pass_on(lease))
        raise Deferred(f"waiting on {scope}")

    async def _retrying(
        self, delivery: Delivery, what: str, call: Callable[[], Awaitable[Any]]
    ) -> Any:
        pause = RETRY_FIRST
        while True:
            try:
                return await call()
            except Exception as exc:
                if delivery.channel.is_closed:
                    raise Deferred(f"could not {what}: the broker has the message back") from exc
                log.warning(
                    "could not %s for %s (%s: %s); trying again in %.1fs",
                    *(what, delivery.envelope.message_id, type(exc).__name__, exc, pause),
                )
                await asyncio.sleep(pause)
                pause = min(RETRY_MAX, pause * 2)

    # -- passing a slot on ----------------------------------------------------------------------

    async def _pass_on(self, lease: Lease | None) -> None:
        """The run holding ``lease`` is over: the slot goes to the oldest waiting copy of its
        scope, or back; after giving it back, copies that arrived meanwhile are looked for."""
        locks, drain = self._locks, self._drain
        assert locks is not None and drain is not None
        while lease is not None:
            known = self._scopes[lease.scope]
            try:
                if not self.stopping():
                    if known.keyed:
                        await locks.declare_waiting(lease.scope, keyed=True)
                    got = await drain.next(lease.scope)
                    if got is not None:
                        self._hand_over(lease, got[1])
                        return
                await locks.give_back(lease)
                if self.stopping() or not await locks.waiting(lease.scope, keyed=known.keyed):
                    return
                lease = await locks.try_take(lease.scope, known.slots)
            except Exception as exc:
                # The connection is gone (and the slot with it), or the broker refused: the
                # sweep finds what waits.
                log.warning("could not pass slot %s on (%s: %s)", lease, type(exc).__name__, exc)
                return

    def _hand_over(self, lease: Lease, message: Any) -> None:
        delivery = Delivery.of(waiting_queue(lease.scope), message)
        self._carried[(id(delivery.channel), delivery.tag)] = lease
        self._spawn(self._run_carried(delivery))

    async def _run_carried(self, delivery: Delivery) -> None:
        assert self._run is not None
        await self._run(delivery)
        # Not admitted (it expired, or its task is unknown here): the slot is still ours.
        lease = self._carried.pop((id(delivery.channel), delivery.tag), None)
        if lease is not None:
            await self._pass_on(lease)

    async def _sweep(self) -> None:
        """Scopes with copies waiting and a slot free (its holder died, or a hand-over was
        missed): take the slot and pass it on. Keys are swept while remembered."""
        while True:
            await asyncio.sleep(SWEEP_EVERY)
            locks = self._locks
            if locks is None or self.stopping():
                continue
            now = time.monotonic()
            for scope, known in list(self._scopes.items()):
                if known.keyed and now - known.seen > KEY_REMEMBERED:
                    if not locks.held(scope):
                        del self._scopes[scope]
                    continue
                try:
                    if locks.held(scope) >= known.slots:
                        continue
                    if not await locks.waiting(scope, keyed=known.keyed):
                        continue
                    lease = await locks.try_take(scope, known.slots)
                except Exception as exc:
                    log.debug("sweeping %s: %s", scope, exc)
                    continue
                if lease is not None:
                    self._spawn(self._pass_on(lease))
