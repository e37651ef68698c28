"""Publish retries: Celery's ``retry`` and ``retry_policy``, mapped onto the publishers.

A publish with ``retry=True`` that meets a connection error (the broker unreachable, or the
connection lost before the confirm) waits the policy's next interval and publishes the same
message again (same task id), up to ``max_retries`` times (``None``: no limit); then it raises
``PublishConnectionError``. ``retry=False`` raises at the first connection error. Either way the
whole call is bounded by the App's ``publish_timeout`` too: whichever runs out first ends it.

Each attempt asks the publisher not to reconnect for it (``reconnect=False``): the attempt
fails at the connection error instead of waiting, so the policy, not the publisher, decides
what happens next. A message is sent again only after its confirm was lost with the connection
(the broker may then hold two copies, with one task id), or when it was never sent.

Intervals as kombu computes them (``fxrange``): ``interval_start``, growing by
``interval_step``, never over ``interval_start + interval_max``.

Pure apart from the clock: the publish is a function passed in.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from rabbitq.errors import ConfigurationError, PublishConnectionError, PublishError

Outcomes = list[PublishError | None]
Item = TypeVar("Item")

POLICY_KEYS = frozenset(
    {"max_retries", "interval_start", "interval_step", "interval_max", "retry_errors"}
)


@dataclass(frozen=True)
class PublishRetryPolicy:
    """Celery's ``retry_policy``, with Celery's defaults."""

    max_retries: int | None = 3
    interval_start: float = 0.0
    interval_step: float = 0.2
    interval_max: float = 1.0  # Celery's task_publish_retry_policy (its Calling guide shows 0.2)
    # Besides connection errors, these are retried too (e.g. ``(PublishTimeoutError,)``).
    retry_errors: tuple[type[PublishError], ...] = ()

    def waits(self) -> Iterator[float]:
        """The wait before each retry: as many as ``max_retries`` (endless when None)."""
        n = 0
        while self.max_retries is None or n < self.max_retries:
            yield min(
                self.interval_start + n * self.interval_step,
                self.interval_start + self.interval_max,
            )
            n += 1

    def retries(self, error: PublishError | None) -> bool:
        return isinstance(error, (PublishConnectionError, *self.retry_errors))

    def updated(self, changes: Mapping[str, Any] | None, where: str) -> PublishRetryPolicy:
        """This policy with ``changes`` (a ``retry_policy`` dict) over it, checked."""
        if not changes:
            return self
        if not isinstance(changes, Mapping):
            raise ConfigurationError(f"{where}: retry_policy must be a dict, got {changes!r}")
        unknown = set(changes) - POLICY_KEYS
        if unknown:
            raise ConfigurationError(
                f"{where}: unknown retry_policy key(s) {', '.join(sorted(unknown))}; "
                f"expected any of {', '.join(sorted(POLICY_KEYS))}"
            )
        fields = dict(changes)
        max_retries = fields.get("max_retries", self.max_retries)
        if max_retries is not None and (
            isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0
        ):
            raise ConfigurationError(
                f"{where}: max_retries must be a whole number >= 0 or None, got {max_retries!r}"
            )
        for key in ("interval_start", "interval_step", "interval_max"):
            value = fields.get(key, getattr(self, key))
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigurationError(f"{where}: {key} must be seconds >= 0, got {value!r}")
            fields[key] = float(value)
        if "retry_errors" in fields:
            fields["retry_errors"] = _retry_errors(fields["retry_errors"], where)
        return replace(self, **fields)


NO_RETRY = PublishRetryPolicy(max_retries=0)


def _retry_errors(value: Any, where: str) -> tuple[type[PublishError], ...]:
    errors = tuple(value or ())
    for error in errors:
        if not (isinstance(error, type) and issubclass(error, PublishError)):
            raise ConfigurationError(
                f"{where}: retry_errors may name PublishError subclasses only (what a publish "
                f"raises, e.g. rabbitq.PublishTimeoutError), got {error!r}"
            )
    return errors


def resolve(
    app_retry: bool,
    app_policy: PublishRetryPolicy,
    task_retry: bool | None,
    task_policy: Mapping[str, Any] | None,
    call_retry: bool | None,
    call_policy: Mapping[str, Any] | None,
) -> PublishRetryPolicy:
    """The call's options win, then the task's, then the App's; policies merge key by key
    (as Celery merges a call's ``retry_policy`` over ``task_publish_retry_policy``)."""
    retry = call_retry if call_retry is not None else task_retry
    retry = app_retry if retry is None else retry
    if not isinstance(retry, bool):
        raise ConfigurationError(f"retry must be True or False, got {retry!r}")
    if not retry:
        return NO_RETRY
    return app_policy.updated(task_policy, "task").updated(call_policy, "apply_async")


def publish_retrying(
    publish: Callable[[Sequence[Item], float], Outcomes],
    items: Sequence[Item],
    policy: PublishRetryPolicy,
    timeout: float,
) -> Outcomes:
    """``publish(items, timeout)`` (one outcome per item), again for the items that met a
    retried error, after each of the policy's waits, all within ``timeout``."""
    deadline = time.monotonic() + timeout
    outcomes: Outcomes = [None] * len(items)
    todo = list(range(len(items)))
    waits = policy.waits()
    while True:
        remaining = max(0.0, deadline - time.monotonic())
        for index, outcome in zip(todo, publish([items[i] for i in todo], remaining), strict=True):
            outcomes[index] = outcome
        todo = [i for i in todo if policy.retries(outcomes[i])]
        if not todo:
            return outcomes
        wait = next(waits, None)
        if wait is None or deadline - time.monotonic() <= wait:
            return outcomes
        time.sleep(wait)


async def apublish_retrying(
    publish: Callable[[Sequence[Item], float], Awaitable[Outcomes]],
    items: Sequence[Item],
    policy: PublishRetryPolicy,
    timeout: float,
) -> Outcomes:
    """``publish_retrying`` for asyncio code."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    outcomes: Outcomes = [None] * len(items)
    todo = list(range(len(items)))
    waits = policy.waits()
    while True:
        remaining = max(0.0, deadline - loop.time())
        results = await publish([items[i] for i in todo], remaining)
        for index, outcome in zip(todo, results, strict=True):
            outcomes[index] = outcome
        todo = [i for i in todo if policy.retries(outcomes[i])]
        if not todo:
            return outcomes
        wait = next(waits, None)
        if wait is None or deadline - loop.time() <= wait:
            return outcomes
        await asyncio.sleep(wait)
