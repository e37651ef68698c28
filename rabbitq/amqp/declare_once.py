"""What publishing needs to exist, declared once per process: target queues and delay levels.

Celery users expect ``delay()`` to work before any worker has started, so the app declares a
task's queue (as the routing file describes it) the first time it publishes there, when
``App(declare_queues_on_publish=True)``. An existing queue is left as it is, whatever its
arguments. The delay levels are declared all together the first time a countdown is sent (see
``declare.py`` for why). After a fork the child declares again: its parent's memory of what
was declared says nothing about a broker the child may reach after a restart.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol, cast

from rabbitq.amqp import contract
from rabbitq.topology import Topology

if TYPE_CHECKING:
    from rabbitq.amqp.aio import AsyncPublisher

# The AMQP clients load on the first declaration, not with the app: ``import rabbitq`` stays
# light (the imports inside the methods below).


class Settings(Protocol):
    """What this needs of the App (a protocol, so the AMQP layer does not import the app)."""

    broker_url: str
    topology: Topology
    declare_queues_on_publish: bool
    publish_timeout: float


class DeclareOnce:
    def __init__(self, app: Settings) -> None:
        self.app = app  # read on each call: the CLI may swap the app's topology after import
        self.reset()

    def reset(self) -> None:
        self._pid = os.getpid()
        self._queues: set[str] = set()
        self._delay_levels = False
        # Declarations under way on an event loop: fifty ``adelay`` calls gathered at once wait
        # for one declaration instead of each opening channels (aiormq numbers channels racily
        # when many open together: "second 'channel.open' seen" closed the connection).
        self._in_flight: dict[str, asyncio.Task[None]] = {}

    def _forget_after_fork(self) -> None:
        if self._pid != os.getpid():
            self.reset()

    def _wanted(self, queue: str | None) -> bool:
        self._forget_after_fork()
        return (
            self.app.declare_queues_on_publish and queue is not None and queue not in self._queues
        )

    def queue(self, queue: str | None) -> None:
        if not self._wanted(queue):
            return
        assert queue is not None
        from rabbitq.amqp.declare_blocking import ensure_queue_blocking

        spec = self.app.topology.queue(queue)
        # On a pika connection of its own, within the publish timeout (declare_blocking.py).
        ensure_queue_blocking(self.app.broker_url, spec, self.app.publish_timeout)
        self._queues.add(queue)

    async def aqueue(self, queue: str | None, publisher: contract.AsyncPublisher) -> None:
        if not self._wanted(queue):
            return
        assert queue is not None
        from rabbitq.amqp.declare import ensure_queue

        publisher = _on_rabbitmq(publisher)

        async def declare() -> None:
            await publisher.connect()
            assert publisher.connection is not None
            await ensure_queue(publisher.connection, self.app.topology.queue(queue))
            self._queues.add(queue)

        await self._once(f"queue:{queue}", declare)

    def _levels_wanted(self) -> bool:
        self._forget_after_fork()
        return not self._delay_levels

    def delay_levels(self) -> None:
        if self._levels_wanted():
            from rabbitq.amqp.declare_blocking import declare_delay_levels_blocking

            kind = self.app.topology.delay_queue_type
            declare_delay_levels_blocking(self.app.broker_url, kind, self.app.publish_timeout)
            self._delay_levels = True

    async def adelay_levels(self, publisher: contract.AsyncPublisher) -> None:
        if self._levels_wanted():
            from rabbitq.amqp.declare import declare_delay_levels

            publisher = _on_rabbitmq(publisher)

            async def declare() -> None:
                await publisher.connect()
                assert publisher.connection is not None
                kind = self.app.topology.delay_queue_type
                await declare_delay_levels(publisher.connection, kind)
                self._delay_levels = True

            await self._once("delay-levels", declare)

    async def _once(self, key: str, declare: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``declare`` once for all callers waiting on this loop; a failure reaches each."""
        running = self._in_flight.get(key)
        loop = asyncio.get_running_loop()
        if running is None or running.done() or running.get_loop() is not loop:
            running = loop.create_task(declare())
            self._in_flight[key] = running
            running.add_done_callback(lambda task: self._forget(key, task))
        # Shielded: one caller cancelled does not cancel the declaration the others wait for.
        await asyncio.shield(running)

    def _forget(self, key: str, task: asyncio.Task[None]) -> None:
        if self._in_flight.get(key) is task:
            del self._in_flight[key]


def _on_rabbitmq(publisher: contract.AsyncPublisher) -> AsyncPublisher:
    """An ``amqp://`` URL makes aio-pika publishers (``transports.py``): this one has a
    connection to declare on."""
    return cast("AsyncPublisher", publisher)
