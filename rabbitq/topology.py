"""The broker objects rabbitq uses, as plain data.

Names here are part of the public contract (see docs/topology.md):

* ``rabbitq`` — durable topic exchange; every task is published to it with its routing key.
* ``<queue>`` — a durable task queue bound to ``rabbitq`` with one or more topic patterns.
  By default a queue ``emails`` is bound with ``emails`` and ``emails.#``.
* ``<queue>.dead`` — where the worker puts what it cannot run, with headers saying why.
  Task queues also dead-letter into it on the broker side (message TTL, max-length drops,
  the quorum delivery limit), so nothing the broker discards vanishes silently. Dead queues
  are unbounded unless the routing file bounds them; bounds are policies (``DeadLetterBounds``)
  so that they can change on a queue that already exists.

Quorum queues carry an explicit ``x-delivery-limit`` (RabbitMQ 4.0 otherwise applies a default
of 20 and 3.x none), so a queue behaves the same on both; see docs/topology.md for each value.

Nothing in this module talks to the broker: ``amqp/declare.py`` turns these into declarations
and ``amqp/management.py`` applies the policies.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from rabbitq.limits.spec import LimitRule

TASK_EXCHANGE = "rabbitq"
DEAD_SUFFIX = ".dead"
# Celery's event exchange (topic, durable): worker and task events, read by Flower and others.
EVENT_EXCHANGE = "celeryev"
# The event history: a RabbitMQ stream bound to EVENT_EXCHANGE, when the routing file asks.
EVENT_HISTORY_QUEUE = "rabbitq.events"
# The revocation log: a RabbitMQ stream every worker reads at start and follows.
REVOCATION_STREAM = "rabbitq.revocations"
# Celery's remote-control mailbox (pidbox): requests fan out to every node's queue, replies
# come back on the direct exchange to the asker's queue. Both non-durable, as kombu declares
# them: the broker refuses a second declaration with other attributes.
CONTROL_EXCHANGE = "celery.pidbox"
CONTROL_REPLY_EXCHANGE = "reply.celery.pidbox"

# The broker's delivery limit on a quorum task queue: a backstop far above the worker's own
# App(redelivery_limit=5). Past it the broker dead-letters into <queue>.dead (never drops).
DEFAULT_DELIVERY_LIMIT = 100
# For quorum queues nothing may ever drop: dead queues (each look by `rabbitq dead` counts as a
# delivery on RabbitMQ 4.x), rabbitq.chords (each coordinator failover counts) and the delay
# levels. -1 would mean "unlimited" on 4.x but drops at the first return on 3.10, so the
# largest signed 32-bit value stands in for it: a limit no message can reach.
UNREACHABLE_DELIVERY_LIMIT = 2**31 - 1
# Policies rabbitq applies are named <prefix><queue> and match exactly one queue.
POLICY_PREFIX = "rabbitq.dead."
DEFAULT_POLICY_PRIORITY = 100

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
    delivery_limit: int | None = None  # quorum only; None: DEFAULT_DELIVERY_LIMIT
    dead_letter_bounds: DeadLetterBounds | None = None  # applied to <queue>.dead as a policy
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
            args["x-delivery-limit"] = self.effective_delivery_limit()
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

    def earlier_arguments(self) -> tuple[dict[str, Any], ...]:
        """Arguments rabbitq used to declare this queue with: an existing queue that has them
        is adopted as it is (a redeclare with the new ones would fail with 406)."""
        if self.type != "quorum" or self.delivery_limit is not None:
            return ()  # a limit written in the routing file is what the operator wants
        return (without_delivery_limit(self.arguments()),)

    def effective_delivery_limit(self) -> int:
        return DEFAULT_DELIVERY_LIMIT if self.delivery_limit is None else self.delivery_limit

    def dead_letter_spec(self) -> DeadLetterQueueSpec:
        return DeadLetterQueueSpec(self.dead_letter_queue, self.type)

    def dead_letter_policy(self, priority: int = DEFAULT_POLICY_PRIORITY) -> Policy | None:
        """The policy bounding ``<queue>.dead``, or None when its dead letters are kept."""
        if self.dead_letter_bounds is None:
            return None
        return self.dead_letter_bounds.policy_for(self.dead_letter_queue, priority)


@dataclass(frozen=True)
class DeadLetterQueueSpec:
    """``<queue>.dead``: same type as its task queue, reached through the default exchange."""

    name: str
    type: QueueType = "classic"

    def arguments(self) -> dict[str, Any]:
        if self.type == "classic":
            return {}  # classic queues neither count deliveries nor drop on a count
        # Browsing (`rabbitq dead list`) takes each message and hands it back: on RabbitMQ
        # 4.x every hand-back counts, and a dead queue has nowhere to dead-letter to.
        return {"x-queue-type": "quorum", "x-delivery-limit": UNREACHABLE_DELIVERY_LIMIT}

    def earlier_arguments(self) -> tuple[dict[str, Any], ...]:
        return (without_delivery_limit(self.arguments()),) if self.type == "quorum" else ()


@dataclass(frozen=True)
class DeadLetterBounds:
    """Opt-in limits on a dead-letter queue; the oldest dead letters go first, for good."""

    max_length: int | None = None
    message_ttl_ms: int | None = None

    def policy_for(self, dead_queue: str, priority: int) -> Policy:
        definition: dict[str, Any] = {}
        if self.max_length is not None:
            definition["max-length"] = self.max_length
            # Explicit, although the default: the newest dead letters are the ones to keep.
            definition["overflow"] = "drop-head"
        if self.message_ttl_ms is not None:
            definition["message-ttl"] = self.message_ttl_ms
        return Policy(
            name=policy_name(dead_queue),
            pattern=exact_pattern(dead_queue),
            definition=definition,
            priority=priority,
        )


@dataclass(frozen=True)
class Policy:
    """A RabbitMQ policy as the management API takes it (PUT /api/policies/vhost/name)."""

    name: str
    pattern: str
    definition: dict[str, Any]
    priority: int = DEFAULT_POLICY_PRIORITY
    apply_to: str = "queues"

    def body(self) -> dict[str, Any]:
        return {
            "pattern": self.pattern,
            "definition": self.definition,
            "priority": self.priority,
            "apply-to": self.apply_to,
        }


def policy_contests(
    policy: Policy, queue_type: QueueType, others: Iterable[dict[str, Any]]
) -> list[str]:
    """Warnings about other policies (as the management API lists them) matching ``policy``'s
    queue. RabbitMQ applies one policy per queue: the highest priority's, either of a tie."""
    queue = policy.name.removeprefix(POLICY_PREFIX)
    lines: list[str] = []
    for other in others:
        if other.get("name") == policy.name or not _applies(other, queue, queue_type):
            continue
        name, priority = other.get("name"), int(other.get("priority", 0))
        keys = ", ".join(sorted(other.get("definition", {}))) or "nothing"
        if priority > policy.priority:
            lines.append(
                f"warning: policy {name!r} (priority {priority}) outranks {policy.name!r} on "
                f"{queue}: the bounds do not apply; set policy_priority above {priority}"
            )
        elif priority == policy.priority:
            lines.append(
                f"warning: policy {name!r} has the same priority as {policy.name!r} on {queue}: "
                "RabbitMQ applies either; give them different priorities"
            )
        else:
            lines.append(
                f"warning: policy {name!r} also matches {queue} and stops applying to it "
                f"({keys}): a queue follows one policy, here {policy.name!r}"
            )
    return lines


def _applies(policy: dict[str, Any], queue: str, queue_type: QueueType) -> bool:
    kinds = {"all", "queues", f"{queue_type}_queues"}  # the last two kinds: RabbitMQ 4.x
    if policy.get("apply-to", "all") not in kinds:
        return False
    try:  # RabbitMQ's patterns are PCRE; Python's re agrees with it on the common subset
        return re.search(str(policy.get("pattern", "")), queue) is not None
    except re.error:
        return False


def policy_name(dead_queue: str) -> str:
    """``rabbitq.dead.emails.dead``: rabbitq's policy for one dead queue."""
    return POLICY_PREFIX + dead_queue


def exact_pattern(queue: str) -> str:
    """A policy pattern (an Erlang regular expression) matching ``queue`` and nothing else."""
    return "^" + re.escape(queue) + "$"


def without_delivery_limit(arguments: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in arguments.items() if k != "x-delivery-limit"}


# What the history keeps: task events and a node's coming and going; heartbeats (every two
# seconds from every process) would be most of the stream and say little afterwards.
EVENT_HISTORY_BINDINGS = ("task.#", "worker.online", "worker.offline")


@dataclass(frozen=True)
class EventHistory:
    """The event history: a stream ``rabbitq.events`` bound to ``celeryev``, with a retention
    (``events.history`` in the routing file). The broker drops whole segments past either
    bound, oldest first."""

    max_age: str | None = None  # RabbitMQ's syntax: a number and Y, M, D, h, m or s ("24h")
    max_bytes: int | None = None
    line: int | None = field(default=None, compare=False)

    def arguments(self) -> dict[str, Any]:
        args: dict[str, Any] = {"x-queue-type": "stream"}
        if self.max_age is not None:
            args["x-max-age"] = self.max_age
        if self.max_bytes is not None:
            args["x-max-length-bytes"] = self.max_bytes
        return args


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
    # Priority of rabbitq's dead-queue policies: RabbitMQ applies one policy per queue, the
    # highest priority's, so this decides between them and operators' own (docs/topology.md).
    policy_priority: int = DEFAULT_POLICY_PRIORITY
    # The event history stream, when the routing file asks for one (``events.history``).
    event_history: EventHistory | None = None
    # Global limits and the tasks they hold back (``limits:``, docs/limits.md).
    limits: tuple[LimitRule, ...] = ()
    source: str | None = None

    def queue(self, name: str) -> QueueSpec:
        """The spec of ``name``: as configured, else a default queue bound to its own name."""
        for spec in self.queues:
            if spec.name == name:
                return spec
        return QueueSpec(name=name, type=self.default_queue_type)

    def configured_queue_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.queues)

    def dead_letter_policies(self) -> tuple[Policy, ...]:
        """The policies this topology wants (one per bounded dead queue)."""
        policies = (spec.dead_letter_policy(self.policy_priority) for spec in self.queues)
        return tuple(policy for policy in policies if policy is not None)

    def unbounded_dead_queues(self) -> tuple[str, ...]:
        """Configured dead queues without bounds: any rabbitq policy left on them goes."""
        return tuple(s.dead_letter_queue for s in self.queues if s.dead_letter_bounds is None)
