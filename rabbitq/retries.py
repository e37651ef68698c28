"""Retry policy and the retried message, as pure functions.

Options keep Celery's names and meanings: ``autoretry_for``, ``max_retries`` (``None`` means
forever), ``retry_backoff`` (``True`` or a base in seconds: base * 2**retries), capped by
``retry_backoff_max``, with ``retry_jitter`` drawing uniformly from [0, that]; otherwise
``default_retry_delay``.

A retry is the same message (same id, same body bytes) with ``retries`` incremented and a new
``eta``. The broker's dead-letter headers are stripped on every republish: RabbitMQ drops a
message dead-lettered into a queue it already expired from when ``x-death`` says so, and the
retry passes through the same delay levels again. The delivery counts (``redelivery.py``)
are dropped too: a retry is a new attempt, and a quorum queue's ``x-delivery-count`` set on a
published message would otherwise be read as the broker's. So is the mark of a run stopped at
its hard time limit (``timeouts.STOPPED_HEADER``): it concerns the attempt that ended.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass, replace

from rabbitq.message import BROKER_DEATH_HEADERS, Envelope
from rabbitq.redelivery import COUNT_HEADERS
from rabbitq.timeouts import STOPPED_HEADER


@dataclass(frozen=True)
class RetryPolicy:
    autoretry_for: tuple[type[BaseException], ...] = ()
    max_retries: int | None = 3
    retry_backoff: bool | float = False
    retry_backoff_max: float = 600.0
    retry_jitter: bool = True
    default_retry_delay: float = 180.0

    def retries_automatically(self, error: BaseException) -> bool:
        return bool(self.autoretry_for) and isinstance(error, self.autoretry_for)

    def exhausted(self, retries: int, max_retries: int | None = None) -> bool:
        """True when ``retries`` retries have already been made and no more are allowed."""
        limit = max_retries if max_retries is not None else self.max_retries
        return limit is not None and retries >= limit

    def countdown(
        self, retries: int, random_fraction: Callable[[], float] = random.random
    ) -> float:
        """Seconds to wait before retry number ``retries + 1``."""
        if not self.retry_backoff:
            return self.default_retry_delay
        base = 1.0 if self.retry_backoff is True else float(self.retry_backoff)
        countdown = min(self.retry_backoff_max, base * 2.0**retries)
        if self.retry_jitter:
            countdown *= random_fraction()
        return countdown


def retry_envelope(original: Envelope, retries: int, eta: dt.datetime | None) -> Envelope:
    """The message to publish for the next attempt: same id and body, new count and eta."""
    headers = {
        key: value
        for key, value in (original.headers or {}).items()
        if key not in BROKER_DEATH_HEADERS and key not in COUNT_HEADERS and key != STOPPED_HEADER
    }
    headers["retries"] = retries
    headers["eta"] = eta.isoformat() if eta is not None else None
    return replace(original, headers=headers, expiration=None)
