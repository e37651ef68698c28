"""Which part of the system each queue is, by its name, and its figures. Pure.

The management API reports every queue on the virtual host. A queue counts as a task queue
when ``<name>.dead`` exists beside it: rabbitq declares one for every queue it consumes or
publishes to, and Celery's own queues get one as soon as a rabbitq worker consumes them.
Mailbox, reply and event-receiver queues are transient views of other tools, and are left out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from rabbitq.chords import CHORD_DEAD_QUEUE, CHORD_QUEUE
from rabbitq.delays import EXCHANGE_PREFIX, UNROUTABLE_QUEUE, level_ttl_ms
from rabbitq.limits.names import RETURNED_QUEUE, parse_queue
from rabbitq.status.newest import NEWEST_SUFFIX
from rabbitq.status.snapshot import DelayLevelFigures, QueueFigures, QueueRole
from rabbitq.topology import DEAD_SUFFIX, EVENT_HISTORY_QUEUE, REVOCATION_STREAM

_LEVEL = re.compile(re.escape(EXCHANGE_PREFIX) + r"(\d+)$")
# Celery's and kombu's transient queues: a node's mailbox, a caller's replies, an event
# receiver (Flower's, ``celery events``'), and rabbitq's own status listeners.
_TRANSIENT = re.compile(r"(\.celery\.pidbox$|^celeryev\.|^amq\.gen-|^rabbitq\.status\.)")


def role_of(name: str, names: frozenset[str]) -> QueueRole | None:
    """The queue's part, or None for a queue no view shows."""
    if name.endswith(NEWEST_SUFFIX) or _TRANSIENT.search(name):
        return None
    if name in (CHORD_QUEUE,):
        return "chords"
    if name in (CHORD_DEAD_QUEUE, UNROUTABLE_QUEUE) or name.endswith(DEAD_SUFFIX):
        return "dead"
    if _LEVEL.match(name):
        return "delay"
    if name.startswith("rabbitq.beat."):
        return "beat"
    if name == EVENT_HISTORY_QUEUE:
        return "events"
    if name == REVOCATION_STREAM:
        return "revocations"
    if name == RETURNED_QUEUE or parse_queue(name) is not None:
        return "limit"
    if name + DEAD_SUFFIX in names:
        return "task"
    return "other"


def queue_figures(queues: Iterable[Mapping[str, Any]]) -> tuple[QueueFigures, ...]:
    """The management API's queue list as figures, sorted by name, shown queues only."""
    listed = list(queues)
    names = frozenset(str(queue.get("name", "")) for queue in listed)
    figures = []
    for queue in listed:
        name = str(queue.get("name", ""))
        role = role_of(name, names)
        if role is None:
            continue
        stats = queue.get("message_stats") or {}
        figures.append(
            QueueFigures(
                name=name,
                role=role,
                type=str(queue.get("type", "classic")),
                messages=_count(queue.get("messages")),
                ready=_count(queue.get("messages_ready")),
                unacked=_count(queue.get("messages_unacknowledged")),
                consumers=_count(queue.get("consumers")),
                publish_rate=_rate(stats, "publish_details"),
                deliver_rate=_rate(stats, "deliver_get_details"),
            )
        )
    return tuple(sorted(figures, key=lambda figure: figure.name))


def delay_levels(figures: Iterable[QueueFigures]) -> tuple[DelayLevelFigures, ...]:
    levels = []
    for figure in figures:
        match = _LEVEL.match(figure.name)
        if figure.role == "delay" and match:
            level = int(match.group(1))
            levels.append(DelayLevelFigures(level, level_ttl_ms(level), figure.messages))
    return tuple(sorted(levels, key=lambda level: level.level))


def source_of(dead_queue: str) -> str:
    """The queue whose dead letters ``dead_queue`` holds (``rabbitq.delay`` for the levels')."""
    if dead_queue == UNROUTABLE_QUEUE:
        return "rabbitq.delay"
    return dead_queue.removesuffix(DEAD_SUFFIX)


def _count(value: Any) -> int:
    # A stream (and a queue the broker has just created) may report no count at all.
    return int(value) if isinstance(value, int | float) else 0


def _rate(stats: Mapping[str, Any], key: str) -> float:
    details = stats.get(key)
    if isinstance(details, Mapping) and isinstance(details.get("rate"), int | float):
        return round(float(details["rate"]), 2)
    return 0.0
