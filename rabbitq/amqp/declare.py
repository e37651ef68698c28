"""Declaring rabbitq's exchanges and queues on the broker, idempotently.

Each queue is declared on a channel of its own: a queue that already exists with different
arguments makes the broker close the channel (PRECONDITION_FAILED), and we turn that into a
``TopologyConflictError`` naming the queue and the arguments we wanted, without disturbing
other declarations.

Queues rabbitq declared before it set ``x-delivery-limit`` on quorum queues are adopted as they
are: each declaration may name the arguments earlier versions used, and a queue that has those
is kept (with a warning) instead of being reported as a conflict.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Literal, TypeVar

import aiormq.exceptions
from aio_pika.abc import AbstractConnection, ExchangeType

from rabbitq.amqp.aio_connection import connect_once
from rabbitq.chords import CHORD_DEAD_QUEUE, CHORD_QUEUE
from rabbitq.delays import (
    DELIVERY_EXCHANGE,
    LEVELS,
    QUEUE,
    ROUTE,
    UNROUTABLE_EXCHANGE,
    UNROUTABLE_QUEUE,
    delivery_pattern,
    level_name,
    level_pattern,
    level_ttl_ms,
)
from rabbitq.errors import TopologyConflictError
from rabbitq.status.newest import NEWEST_QUEUE_ARGUMENTS, newest_queue_name
from rabbitq.topology import (
    EVENT_EXCHANGE,
    EVENT_HISTORY_BINDINGS,
    EVENT_HISTORY_QUEUE,
    TASK_EXCHANGE,
    UNREACHABLE_DELIVERY_LIMIT,
    EventHistory,
    QueueSpec,
    QueueType,
    Topology,
    without_delivery_limit,
)

T = TypeVar("T")
log = logging.getLogger("rabbitq.topology")


async def declare_task_exchange(connection: AbstractConnection) -> None:
    """``rabbitq`` (where tasks are published) and ``rabbitq.delivery`` (where delays end)."""
    async with connection.channel() as channel:
        await channel.declare_exchange(TASK_EXCHANGE, ExchangeType.TOPIC, durable=True)
        # A delayed message nobody binds at delivery time must not vanish: the alternate
        # exchange catches it into rabbitq.delay.dead.
        await channel.declare_exchange(UNROUTABLE_EXCHANGE, ExchangeType.FANOUT, durable=True)
    if await _declare_one(connection, UNROUTABLE_QUEUE, {}) is not None:
        async with connection.channel() as channel:
            dead = await channel.get_queue(UNROUTABLE_QUEUE, ensure=False)
            await dead.bind(UNROUTABLE_EXCHANGE)
    async with connection.channel() as channel:
        await channel.declare_exchange(
            DELIVERY_EXCHANGE,
            ExchangeType.TOPIC,
            durable=True,
            arguments={"alternate-exchange": UNROUTABLE_EXCHANGE},
        )


async def declare_delay_levels(
    connection: AbstractConnection, queue_type: QueueType = "quorum"
) -> QueueType:
    """Declare every level (exchange, queue, both bindings). Returns the queue type used.

    All levels are declared together, every time: a level whose queue or bindings were
    missing would strand messages silently, so none is ever left to chance.
    """
    if queue_type == "classic":
        await _declare_levels(connection, quorum=False)
        return "classic"
    try:
        await _declare_levels(connection, quorum=True)
    except TopologyConflictError:
        raise
    except aiormq.exceptions.AMQPError as exc:
        # Quorum queues with at-least-once dead-lettering need RabbitMQ 3.10+; without them
        # a node crash in the middle of a cascade can lose the message being moved.
        log.warning("delay levels fall back to classic queues (quorum unavailable: %s)", exc)
        await _declare_levels(connection, quorum=False)
        return "classic"
    return "quorum"


async def _declare_levels(connection: AbstractConnection, *, quorum: bool) -> None:
    async with connection.channel() as channel:
        for level in range(LEVELS):
            await channel.declare_exchange(level_name(level), ExchangeType.TOPIC, durable=True)
    for level in range(LEVELS):
        target = level_name(level - 1) if level > 0 else DELIVERY_EXCHANGE
        arguments: dict[str, Any] = {
            "x-message-ttl": level_ttl_ms(level),
            "x-dead-letter-exchange": target,  # routing key kept: it carries the rest
        }
        earlier: tuple[dict[str, Any], ...] = ()
        if quorum:
            arguments.update(
                {
                    "x-queue-type": "quorum",
                    "x-dead-letter-strategy": "at-least-once",
                    "x-overflow": "reject-publish",  # required by at-least-once
                    # Nobody consumes a level (messages leave by TTL, which counts no
                    # delivery); a tool that peeks must still never make a delay vanish.
                    "x-delivery-limit": UNREACHABLE_DELIVERY_LIMIT,
                }
            )
            earlier = (without_delivery_limit(arguments),)
        await _declare_one(connection, level_name(level), arguments, earlier)
    async with connection.channel() as channel:
        for level in range(LEVELS):
            target = level_name(level - 1) if level > 0 else DELIVERY_EXCHANGE
            queue = await channel.get_queue(level_name(level), ensure=False)
            await queue.bind(level_name(level), routing_key=level_pattern(level, "1"))
            source = await channel.get_exchange(level_name(level), ensure=False)
            destination = await channel.get_exchange(target, ensure=False)
            await destination.bind(source, routing_key=level_pattern(level, "0"))


async def declare_chord_queues(connection: AbstractConnection) -> None:
    """``rabbitq.chords`` (single active consumer: the coordinator) and its ``.dead`` queue.

    Quorum if the broker can (parts survive a node loss), else classic; both durable. The
    coordinator holds parts unacked and a failover hands them all back, which RabbitMQ 4.x
    counts as a delivery: the unreachable limit keeps failovers from ever dropping or
    dead-lettering a part (only the coordinator sends one to ``rabbitq.chords.dead``).
    """
    base: dict[str, Any] = {
        "x-single-active-consumer": True,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": CHORD_DEAD_QUEUE,
    }
    quorum = {**base, "x-queue-type": "quorum"}
    await _declare_one(
        connection,
        CHORD_QUEUE,
        {**quorum, "x-delivery-limit": UNREACHABLE_DELIVERY_LIMIT},
        (quorum, base),  # before delivery limits; or classic: keep it
    )
    await _declare_one(connection, CHORD_DEAD_QUEUE, {})  # classic: counts no deliveries


async def declare_event_history(connection: AbstractConnection, history: EventHistory) -> None:
    """The stream ``rabbitq.events``, bound to ``celeryev`` for task and worker-online/offline
    events (Celery's workers' too, where they share the broker). A retention changed in the
    routing file is a conflict: streams keep their arguments (docs/events.md says how)."""
    async with connection.channel() as channel:
        # Durable topic, as Celery declares it: either side may come first.
        await channel.declare_exchange(EVENT_EXCHANGE, ExchangeType.TOPIC, durable=True)
    await _declare_one(connection, EVENT_HISTORY_QUEUE, history.arguments())
    async with connection.channel() as channel:
        queue = await channel.get_queue(EVENT_HISTORY_QUEUE, ensure=False)
        for pattern in EVENT_HISTORY_BINDINGS:
            await queue.bind(EVENT_EXCHANGE, routing_key=pattern)


async def declare_queue(connection: AbstractConnection, spec: QueueSpec) -> list[str]:
    """Declare ``spec``, its ``.dead`` queue and its bindings to the task exchange.

    Returns the names of queues adopted with the arguments of an earlier rabbitq.
    """
    await declare_task_exchange(connection)  # binding to a missing exchange is a 404
    dead = spec.dead_letter_spec()
    # The task queue first, so a conflict names the queue the operator wrote down.
    queue = await _declare_one(connection, spec.name, spec.arguments(), spec.earlier_arguments())
    dead_queue = await _declare_one(
        connection, dead.name, dead.arguments(), dead.earlier_arguments()
    )
    adopted = [name for name, kept in ((spec.name, queue), (dead.name, dead_queue)) if kept]
    await _declare_one(connection, newest_queue_name(dead.name), NEWEST_QUEUE_ARGUMENTS)
    # None: on a node that is down, where binding fails the same way; its bindings are still
    # there when its node comes back.
    if queue is not None:
        await bind_queue(connection, spec)
    return adopted


async def bind_queue(connection: AbstractConnection, spec: QueueSpec) -> None:
    """Bind ``spec`` to ``rabbitq`` and, for delayed messages and retries, ``rabbitq.delivery``."""
    async with connection.channel() as channel:
        queue = await channel.get_queue(spec.name, ensure=False)
        for pattern in spec.effective_bindings():
            await queue.bind(TASK_EXCHANGE, routing_key=pattern)
            await queue.bind(DELIVERY_EXCHANGE, routing_key=delivery_pattern(ROUTE, pattern))
        await queue.bind(DELIVERY_EXCHANGE, routing_key=delivery_pattern(QUEUE, spec.name))


async def ensure_queue(connection: AbstractConnection, spec: QueueSpec) -> None:
    """Declare ``spec`` unless a queue of that name already exists (whatever its arguments).

    Publishers use this: operations may have declared the queue differently with
    ``rabbitq topology apply``, and a publisher must not fight that.
    """
    state = await _probe(connection, spec.name)
    if state == "missing":
        await declare_queue(connection, spec)
        return
    # It exists (perhaps declared by Celery, without our arguments): make sure retries and
    # delayed publishes can reach it (bindings are idempotent) and that its dead letters have
    # somewhere to go.
    await declare_task_exchange(connection)
    dead = spec.dead_letter_spec()
    if not await _exists(connection, dead.name):
        await _declare_one(connection, dead.name, dead.arguments())
    if not await _exists(connection, newest_queue_name(dead.name)):
        await _declare_one(connection, newest_queue_name(dead.name), NEWEST_QUEUE_ARGUMENTS)
    if state == "up":  # not bound while on a node that is down (see ``declare_queue``)
        await bind_queue(connection, spec)


async def _exists(connection: AbstractConnection, queue: str) -> bool:
    """Whether ``queue`` exists, on a node that is up or (a classic queue) one that is down."""
    return await _probe(connection, queue) != "missing"


async def _probe(connection: AbstractConnection, queue: str) -> Literal["up", "down", "missing"]:
    """``queue`` exists and answers; exists on a node that is down (a classic queue); or
    does not exist."""
    try:
        async with connection.channel() as channel:
            await channel.declare_queue(queue, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity as exc:
        return "down" if home_node_down(exc) else "missing"
    return "up"


async def apply_topology(connection: AbstractConnection, topology: Topology) -> list[str]:
    """Declare everything a routing file describes; return one line per object declared."""
    await declare_task_exchange(connection)
    level_type = await declare_delay_levels(connection, topology.delay_queue_type)
    report = [
        f"exchange {TASK_EXCHANGE} (topic, durable)",
        f"exchange {DELIVERY_EXCHANGE} (topic, durable)",
        f"delay levels {level_name(0)} .. {level_name(LEVELS - 1)} ({level_type})",
    ]
    for spec in topology.queues:
        adopted = await declare_queue(connection, spec)
        bindings = ", ".join(spec.effective_bindings())
        report.append(f"queue {spec.name} ({spec.type}) bound to {bindings}")
        report.append(f"queue {spec.dead_letter_queue} ({spec.type})")
        report += [f"queue {name} kept as declared earlier: {EARLIER_NOTE}" for name in adopted]
    history = topology.event_history
    if history is not None:
        await declare_event_history(connection, history)
        kept = ", ".join(
            f"{what} {value}"
            for what, value in (("max_age", history.max_age), ("max_bytes", history.max_bytes))
            if value is not None
        )
        report.append(f"stream {EVENT_HISTORY_QUEUE} ({kept}) bound to {EVENT_EXCHANGE}")
    return report


EARLIER_NOTE = (
    "without x-delivery-limit, so the broker's default applies (none on RabbitMQ 3.x, 20 on "
    "4.x); see docs/topology.md, 'Queues declared by earlier versions'"
)


async def _declare_one(
    connection: AbstractConnection,
    name: str,
    arguments: dict[str, Any],
    earlier: tuple[dict[str, Any], ...] = (),
) -> bool | None:
    """Declare ``name`` with ``arguments``; True if it exists with one of ``earlier`` instead,
    None if it exists on a node that is down.

    Each attempt has its own channel: a mismatch (406) closes the channel it happened on.
    """
    for candidate in (arguments, *earlier):
        try:
            async with connection.channel() as channel:
                await channel.declare_queue(name, durable=True, arguments=candidate)
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            refusal = exc
            continue
        except aiormq.exceptions.ChannelNotFoundEntity as exc:
            if not home_node_down(exc):
                raise
            # A classic queue whose node is down (a cluster that lost a node): it exists,
            # and comes back with its node. Declaring it cannot succeed meanwhile; what
            # depends on the rest of the topology must not wait for it.
            log.warning("queue %r is on a node that is down; left as it is: %s", name, exc)
            return None
        # A classic queue counts no deliveries: nothing to warn about.
        adopted = candidate is not arguments and candidate.get("x-queue-type") == "quorum"
        if adopted:
            log.warning("queue %r kept as declared earlier: %s", name, EARLIER_NOTE)
        return adopted
    raise TopologyConflictError(
        f"queue {name!r} already exists with different arguments than wanted "
        f"({_describe(arguments)}); the broker said: {refusal}. Delete the queue or change the "
        "routing file to match it (queue arguments cannot change in place)."
    ) from None


def home_node_down(error: BaseException) -> bool:
    """The broker's 404 for a durable classic queue whose node is down or unreachable."""
    return "home node" in str(error) and "is down or inaccessible" in str(error)


def _describe(arguments: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in sorted(arguments.items())) or "no arguments"


async def with_connection(url: str, work: Callable[[AbstractConnection], Awaitable[T]]) -> T:
    """Open a plain (non-robust) connection for one job, then close it."""
    connection = await connect_once(url, what="declaring the topology")
    try:
        return await work(connection)
    finally:
        await connection.close()


def run_blocking(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to completion from synchronous code, even inside a running loop.

    A private thread with its own loop keeps this safe to call from sync code that happens
    to run on an event loop's thread (where ``asyncio.run`` would refuse).
    """
    outcome: dict[str, Any] = {}

    def runner() -> None:
        try:
            outcome["value"] = asyncio.run(coroutine)
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=runner, name="rabbitq-declare", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    value: T = outcome["value"]
    return value
