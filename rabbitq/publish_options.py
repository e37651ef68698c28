"""``apply_async``'s options: their names, their checks, and the times they give.

Pure; the app turns these into a message (``App.prepare``).
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


OPTION_NAMES = frozenset(PublishOptions.__dataclass_fields__)


def parse_options(options: Mapping[str, Any]) -> PublishOptions:
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
