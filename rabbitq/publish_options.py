"""``apply_async``'s options: their names, their checks, and the times they give.

Pure; the app turns these into a message (``App.prepare``). Celery's Calling-guide options
that rabbitq does not take are refused by name, each saying why and what to use instead
(``REFUSED``); the table in ``docs/migrating-from-celery.md`` lists them all.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rabbitq.errors import ConfigurationError
from rabbitq.message import utcnow


@dataclass(frozen=True)
class PublishOptions:
    """Per-call options of ``apply_async``; ``None`` means "use the task's default"."""

    task_id: str | None = None
    queue: str | None = None
    routing_key: str | None = None
    priority: int | None = None
    expires: float | dt.datetime | None = None
    countdown: float | None = None
    eta: dt.datetime | None = None
    headers: Mapping[str, Any] | None = None
    serializer: str | None = None
    parent_id: str | None = None
    root_id: str | None = None
    time_limit: float | None = None
    soft_time_limit: float | None = None
    # Results and the canvas (Celery's names).
    link: Any = None  # a signature or a list of them: run with the result on success
    link_error: Any = None  # run with the task id on failure
    reply_to: str | None = None
    ignore_result: bool | None = None
    group_id: str | None = None
    group_index: int | None = None
    # Publish retries on a lost connection (Celery's names; see ``publish_retry.py``).
    retry: bool | None = None
    retry_policy: Mapping[str, Any] | None = None
    # Celery's option, taken only with the value that matches what rabbitq always does.
    add_to_parent: bool | None = None


OPTION_NAMES = frozenset(PublishOptions.__dataclass_fields__)


# Celery's options rabbitq refuses: why, and what to use instead.
REFUSED: Mapping[str, str] = {
    "exchange": "rabbitq publishes every task to its one topic exchange and routes by key; "
    "use queue= or routing_key= (or the routing file, docs/routing.md)",
    "compression": "rabbitq does not compress message bodies; keep arguments small "
    "(pass a reference, such as a storage key, for large data)",
    "shadow": "rabbitq logs and reports tasks under their registered name; register the "
    "function under another name with @app.task(name=...) instead",
    "connection": "each process has one publisher per App (and one per event loop); "
    "set the broker with App(broker=...)",
    "producer": "each process has one publisher per App (and one per event loop); "
    "set the broker with App(broker=...)",
    "publisher": "each process has one publisher per App (and one per event loop); "
    "set the broker with App(broker=...)",
    "declare": "queues are declared from the routing file and on first publish "
    "(App(declare_queues_on_publish=...)); use `rabbitq topology apply`",
    "delivery_mode": "every task message is persistent (delivery_mode 2); "
    "there is no transient mode",
    "mandatory": "every publish is mandatory: an unroutable task raises UnroutableError",
    "immediate": "RabbitMQ removed the immediate flag (3.0); use expires= for a deadline",
    "router": "routes come from the routing file and the task's queue/routing_key; "
    "pass queue= or routing_key= per call",
    "chord": "build chords with rabbitq.chord(header, body) (docs/canvas.md)",
    "chain": "build chains with rabbitq.chain(...) or sig | sig (docs/canvas.md)",
}

ADD_TO_PARENT_REFUSAL = (
    "add_to_parent=True is refused: rabbitq does not record a task's children sent from "
    "inside it (result.children lists only what it sent on: its link callbacks and its "
    "chain's next step); leave it out, or pass add_to_parent=False"
)


# ``delay()`` passes no options: one shared value (frozen) instead of three set operations
# and a dataclass per call.
NO_OPTIONS = PublishOptions()


def parse_options(options: Mapping[str, Any]) -> PublishOptions:
    if not options:
        return NO_OPTIONS
    refused = sorted(set(options) & set(REFUSED))
    if refused:
        raise ConfigurationError(
            "; ".join(
                f"apply_async option {name!r} is not supported: {REFUSED[name]}" for name in refused
            )
        )
    if options.get("add_to_parent"):
        raise ConfigurationError(ADD_TO_PARENT_REFUSAL)
    unknown = set(options) - OPTION_NAMES
    if unknown:
        raise TypeError(
            f"unknown apply_async option(s): {', '.join(sorted(unknown))}; "
            f"expected any of: {', '.join(sorted(OPTION_NAMES))}"
        )
    return PublishOptions(**options)


def absolute_time(value: float | dt.datetime | None, name: str) -> dt.datetime | None:
    """Seconds from now, or an aware datetime. Naive datetimes are ambiguous: rejected."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ConfigurationError(
                f"{name} must be timezone-aware (e.g. datetime.now(timezone.utc)), got {value!r}"
            )
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return utcnow() + dt.timedelta(seconds=value)
    raise ConfigurationError(f"{name} must be seconds or an aware datetime, got {value!r}")


def eta_of(countdown: float | None, eta: dt.datetime | None) -> dt.datetime | None:
    if countdown is not None and eta is not None:
        raise ConfigurationError("give countdown or eta, not both")
    if countdown is not None:
        if isinstance(countdown, bool) or not isinstance(countdown, int | float):
            raise ConfigurationError(f"countdown must be a number of seconds, got {countdown!r}")
        return utcnow() + dt.timedelta(seconds=countdown) if countdown > 0 else None
    if eta is not None:
        return absolute_time(eta, "eta")
    return None
