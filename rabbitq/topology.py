"""The broker objects rabbitq uses, as plain data.

Names here are part of the public contract (see docs/topology.md):

* ``rabbitq`` — durable topic exchange; every task is published to it with its routing key.
* ``<queue>`` — a durable task queue bound to ``rabbitq`` with one or more topic patterns.
  By default a queue ``emails`` is bound with ``emails`` and ``emails.#``.
* ``<queue>.dead`` — where the worker puts what it cannot run, with headers saying why.
  Task queues also dead-letter into it on the broker side (message TTL, max-length drops),
  so nothing the broker discards vanishes silently.

Nothing in this module talks to the broker: ``amqp/declare.py`` turns these into declarations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

TASK_EXCHANGE = "rabbitq"
DEAD_SUFFIX = ".dead"

QueueType = Literal["classic", "quorum"]
Overflow = Literal["drop-head", "reject-publish", "reject-publish-dlx"]


def dead_letter_queue_name(queue: str) -> str:
    """The name of the queue that holds what ``queue``'s workers could not run."""
    return queue + DEAD_SUFFIX


def default_bindings(queue: str) -> tuple[str, ...]:
    """A queue without configured bindings takes its own name and everything below it."""
    return (queue, queue + ".#")


@dataclass(frozen=True)
class QueueSpec:
    """One task queue: its type, its limits and the topic patterns bound to it."""

    name: str
    type: QueueType = "classic"
    bindings: tuple[str, ...] = ()
    max_length: int | None = None
    max_length_bytes: int | None = None
    overflow: Overflow | None = None
    message_ttl_ms: int | None = None
    max_priority: int | None = None
    line: int | None = field(default=None, compare=False)  # where a routing file declared it

    @property
    def dead_letter_queue(self) -> str:
        return dead_letter_queue_name(self.name)

    def effective_bindings(self) -> tuple[str, ...]:
        return self.bindings or default_bindings(self.name)

    def arguments(self) -> dict[str, Any]:
        """The ``x-`` arguments for queue.declare. Changing them later is a conflict."""
        args: dict[str, Any] = {
            # What the broker itself drops (TTL, max-length drop-head, quorum delivery limit)
            # goes to <queue>.dead through the default exchange instead of vanishing.
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.dead_letter_queue,
        }
        if self.type == "quorum":
            args["x-queue-type"] = "quorum"
        if self.max_length is not None:
            args["x-max-length"] = self.max_length
        if self.max_length_bytes is not None:
            args["x-max-length-bytes"] = self.max_length_bytes
        if self.overflow is not None:
            args["x-overflow"] = self.overflow
        if self.message_ttl_ms is not None:
            args["x-message-ttl"] = self.message_ttl_ms
        if self.max_priority is not None:
            args["x-max-priority"] = self.max_priority
        return args

    def dead_letter_spec(self) -> DeadLetterQueueSpec:
        return DeadLetterQueueSpec(self.dead_letter_queue, self.type)


@dataclass(frozen=True)
class DeadLetterQueueSpec:
    """``<queue>.dead``: same type as its task queue, reached through the default exchange."""

    name: str
    type: QueueType = "classic"

    def arguments(self) -> dict[str, Any]:
        return {"x-queue-type": "quorum"} if self.type == "quorum" else {}


@dataclass(frozen=True)
class TaskRoute:
    """A routing-file entry mapping task names (glob patterns allowed) to a routing key."""

    task_pattern: str
    routing_key: str
    line: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Topology:
    """Queues and task routes: from a routing file, or empty (every queue takes defaults)."""

    queues: tuple[QueueSpec, ...] = ()
    task_routes: tuple[TaskRoute, ...] = ()
    default_queue_type: QueueType = "classic"
    # Quorum levels dead-letter at-least-once (a crash mid-cascade loses nothing); classic
    # levels are several times cheaper for the broker. See docs/delays.md.
    delay_queue_type: QueueType = "quorum"
    source: str | None = None

    def queue(self, name: str) -> QueueSpec:
        """The spec of ``name``: as configured, else a default queue bound to its own name."""
        for spec in self.queues:
            if spec.name == name:
                return spec
        return QueueSpec(name=name, type=self.default_queue_type)

    def configured_queue_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.queues)
