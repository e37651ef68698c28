"""Time limits and the broker's consumer_timeout, as pure rules (no I/O, no clock).

A run's limits come from its message (``TaskMessage.timelimit``, ``(soft, hard)`` seconds,
set by ``apply_async(time_limit=, soft_time_limit=)``, the task's options, or a Celery
producer), else from the task's own options. None means no limit.

RabbitMQ takes a delivery back (closes its channel; from 4.3 cancels its consumer) when it
stays unacked longer than the consumer timeout, counted from delivery, and the task would
then run a second time beside itself. So every run also stops before that: its hard limit is
never later than the **ceiling**, the consumer timeout less a margin for the broker's check
and an ordinary settle (follow-ups retried past it may still meet the timeout:
at-least-once), counted from the moment the message arrived (a prefetched message waits for
a slot on the same clock). ``consumer_timeout=None`` says the broker enforces none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from rabbitq.errors import ConfigurationError
from rabbitq.message import TaskMessage


class Task(Protocol):
    """What these rules read of a task (``rabbitq.Task`` has it; no import of it here, so
    this module stays below the task and its retry policy)."""

    @property
    def time_limit(self) -> float | None: ...

    @property
    def soft_time_limit(self) -> float | None: ...


# On a copy of a message whose run did not stop at its hard limit, parked in the delay
# levels until that run's process has certainly exited (``worker/pipeline.py``). The next
# worker to receive it concludes the run as stopped: retry policy, else ``time-limit``.
STOPPED_HEADER = "rabbitq_stopped"

DEFAULT_CONSUMER_TIMEOUT = 1800.0  # seconds: RabbitMQ's default (30 minutes)
MARGIN_MAX = 60.0  # seconds kept between a run's end and the broker's consumer timeout...
MARGIN_FRACTION = 0.1  # ...or this fraction of the timeout, whichever is less
# A message that waited for a slot until less than this fraction of its window was left is
# handed back to its queue instead of started (a fresh delivery gets a whole window).
START_AT_LEAST = 0.1


@dataclass(frozen=True, slots=True)
class Limits:
    soft: float | None
    hard: float | None
    capped: bool = False  # the hard limit is the consumer-timeout ceiling, not the task's


def ceiling(consumer_timeout: float | None) -> float | None:
    """Seconds from arrival by which every run must have ended."""
    if consumer_timeout is None:
        return None
    return consumer_timeout - min(MARGIN_MAX, consumer_timeout * MARGIN_FRACTION)


def declared_limits(task: Task | None, message: TaskMessage) -> tuple[float | None, float | None]:
    """``(soft, hard)`` asked for by the message, else by the task."""
    soft, hard = message.timelimit
    if task is not None:
        soft = soft if soft is not None else task.soft_time_limit
        hard = hard if hard is not None else task.time_limit
    return _positive(soft), _positive(hard)


def limits_for(
    task: Task | None, message: TaskMessage, consumer_timeout: float | None, waited: float = 0.0
) -> Limits | None:
    """The limits of one run that starts ``waited`` seconds after its message arrived."""
    soft, hard = declared_limits(task, message)
    capped = False
    window = ceiling(consumer_timeout)
    if window is not None:
        left = max(0.0, window - waited)
        if hard is None or hard > left:
            hard, capped = left, True
    if soft is not None and hard is not None and soft >= hard:
        soft = None  # the hard limit comes first: the soft one would never be heard
    if soft is None and hard is None:
        return None
    return Limits(soft, hard, capped)


def too_late_to_start(consumer_timeout: float | None, waited: float) -> bool:
    """Too little of the message's window is left: hand it back instead of starting it."""
    window = ceiling(consumer_timeout)
    return window is not None and window - waited < window * START_AT_LEAST


def check_consumer_timeout(consumer_timeout: float | None) -> float | None:
    if consumer_timeout is not None and consumer_timeout <= 0:
        raise ConfigurationError(
            "consumer_timeout must be positive seconds, or None when the broker enforces none"
        )
    return consumer_timeout


def tasks_over_the_ceiling(tasks: Mapping[str, Task], consumer_timeout: float | None) -> list[str]:
    """Tasks whose own limits could never be met: the broker would take their message back
    first. A worker refuses to start with any (``worker/consumer.py``)."""
    window = ceiling(consumer_timeout)
    if window is None:
        return []
    over = []
    for name, task in sorted(tasks.items()):
        options = (("time_limit", task.time_limit), ("soft_time_limit", task.soft_time_limit))
        for option, value in options:
            if value is not None and value > window:
                over.append(f"{name} ({option}={value:g}s)")
    return over


def _positive(value: float | None) -> float | None:
    return value if value is not None and value > 0 else None


def refuse_limits_over_the_ceiling(
    tasks: Mapping[str, Task], consumer_timeout: float | None
) -> None:
    """A task whose own limit is past the ceiling would have its message taken back by the
    broker while it runs: a worker refuses to start rather than run it twice."""
    over = tasks_over_the_ceiling(tasks, consumer_timeout)
    if over:
        assert consumer_timeout is not None
        raise ConfigurationError(
            f"time limits longer than the broker's consumer_timeout allows "
            f"({consumer_timeout:g}s, less a margin): {', '.join(over)}; RabbitMQ would "
            "take the message back while the task runs, and run it again beside itself. "
            "Raise App(consumer_timeout=...) (and the broker's consumer_timeout where it "
            "cannot be set per consumer: RabbitMQ before 3.12) or lower the limits"
        )
