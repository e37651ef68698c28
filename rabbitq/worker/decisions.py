"""What to do with a delivery: pure decisions over data, no I/O.

The pipeline (``pipeline.py``) asks three questions of each delivery and only carries out the
answers; every branch here is a unit test without a broker.

``decide_arrival`` — before running, in order:

1. redelivered too often (a crash loop)?         DeadLetter("redelivery-limit")
   redelivered from a classic queue?             Recount (the count rides in a header)
2. a body over ``max_message_size``, or nested
   deeper than ``nesting.MAX_NESTING``?           DeadLetter("too-large" | "too-deep"), undecoded
   the App signs, and the signature is missing,
   made with a key it lacks, or does not match?  DeadLetter("bad-signature"), undecoded
   not a valid task message?                     DeadLetter("undecodable")
3. ``expires`` passed?                           DeadLetter("expired")
4. a Celery chord member?                        DeadLetter("unsupported")
5. unknown task, or arguments that do not fit?   DeadLetter("unknown-task" | "bad-arguments")
6. a copy parked after its run did not stop?     Stopped (concluded as TimeLimitExceeded)
7. ``eta`` more than a second ahead?             Later (back through the delay levels)
8. otherwise                                     Run (after a short wait if due within 1 s)

``decide_outcome`` — after the task returned or raised:

* returned                                       Succeed
* raised ``Terminated`` (revoked while running)  Revoked
* ``self.retry()`` or an ``autoretry_for`` error RetryAt, or DeadLetter("retries-exhausted")
* stopped at its hard time limit                 DeadLetter("time-limit")
* anything else, any ``BaseException`` included  DeadLetter("task-failed")

``decide_followup_failure`` — the task succeeded but its follow-ups did not go out:

* a permanent error (unroutable, bad signature, too large, unencodable)
                                                 DeadLetter("followup-failed") at once
* a transient one (broker or Redis down)         RetryFollowups (the follow-ups, never the task)
  until ``deadline``, then DeadLetter("followup-failed")
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rabbitq import dead_letters
from rabbitq.delays import delay_ms_until
from rabbitq.errors import (
    ConfigurationError,
    FollowupError,
    MessageError,
    PublishError,
    PublishNackedError,
    PublishTimeoutError,
    RabbitqError,
    ResultEncodeError,
    Retry,
    TaskArgumentsError,
    Terminated,
    TimeLimitExceeded,
    UnknownTaskError,
    UnsupportedMessageError,
)
from rabbitq.message import Envelope, TaskMessage, decode_task, utcnow
from rabbitq.message_size import DEFAULT_MAX_MESSAGE_SIZE, incoming_refusal
from rabbitq.redelivery import judge_redelivery
from rabbitq.signing import Signer
from rabbitq.task import Task
from rabbitq.timeouts import STOPPED_HEADER

# A message due within this many milliseconds waits in the worker; a later one goes back
# through the delay levels so that it costs the worker no memory and no prefetch slot.
HOLD_AT_MOST_MS = 1000

# Follow-ups that fail for a transient reason are retried with this backoff (seconds).
FOLLOWUP_BACKOFF_FIRST = 0.5
FOLLOWUP_BACKOFF_MAX = 10.0


@dataclass(slots=True)
class Run:
    task: Task
    message: TaskMessage
    wait_s: float = 0.0  # due within a second: wait in the worker, then run


@dataclass(slots=True)
class DeadLetter:
    reason: str
    error: BaseException
    message: TaskMessage | None = None


@dataclass(slots=True)
class Recount:
    redeliveries: int


@dataclass(slots=True)
class Later:
    message: TaskMessage
    eta: dt.datetime


@dataclass(slots=True)
class Stopped:
    """A copy parked by a worker whose run of it did not stop at its hard time limit; that
    worker's process has exited since, so the run is over: conclude it."""

    task: Task
    message: TaskMessage
    error: TimeLimitExceeded


@dataclass(slots=True)
class Succeed:
    value: Any


@dataclass(slots=True)
class RetryAt:
    eta: dt.datetime
    retries: int  # the count the next attempt carries
    cause: BaseException


@dataclass(slots=True)
class RetryFollowups:
    after_s: float


# Not frozen: a frozen dataclass sets each field through object.__setattr__, and two of these
# are made for every task.
Arrival = Run | DeadLetter | Recount | Later | Stopped


@dataclass(slots=True)
class Revoked:
    """Revoked while it ran (``terminate=True``): REVOKED, acked, never retried."""

    error: BaseException


Verdict = Succeed | RetryAt | DeadLetter | Revoked


def decide_arrival(
    envelope: Envelope,
    *,
    redelivered: bool,
    tasks: Mapping[str, Task],
    redelivery_limit: int,
    quorum: bool = False,
    clock: Callable[[], dt.datetime] = utcnow,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    signer: Signer | None = None,
) -> Arrival:
    """``quorum``: the queue is known to be a quorum queue (see ``redelivery.py``); ``clock``
    is read only for a message with an ``expires`` or an ``eta``; ``signer``: the App signs,
    so nothing unsigned runs."""
    verdict = judge_redelivery(redelivered, envelope.headers, redelivery_limit, quorum=quorum)
    if verdict.action == "dead-letter":
        return DeadLetter(
            dead_letters.REASON_REDELIVERY_LIMIT,
            RabbitqError(
                f"delivered {verdict.redeliveries + 1} times without finishing "
                f"(limit: {redelivery_limit} redeliveries); it may crash workers"
            ),
        )
    if verdict.action == "recount":
        return Recount(verdict.redeliveries)
    refusal = incoming_refusal(envelope, max_message_size)
    if refusal is None and signer is not None:
        refusal = signer.check(envelope)
    if refusal is not None:
        return DeadLetter(refusal.reason, refusal)
    try:
        message = decode_task(envelope)
    except MessageError as exc:
        return DeadLetter(exc.reason, exc)
    now = clock() if message.expires is not None or message.eta is not None else None
    if now is not None and message.is_expired(now):
        assert message.expires is not None
        return DeadLetter(
            dead_letters.REASON_EXPIRED,
            RabbitqError(f"expired at {message.expires.isoformat()}"),
            message,
        )
    if message.chord is not None:
        # Celery joins a chord in its result backend, from the worker that runs each member;
        # a member run here would leave the chord waiting for ever.
        error = UnsupportedMessageError(
            f"task {message.task} is a member of a Celery chord ('chord' in the message); "
            "rabbitq workers cannot join Celery's chords: run the chord on Celery workers, or "
            "build it with rabbitq.chord"
        )
        return DeadLetter(error.reason, error, message)
    task = tasks.get(message.task)
    if task is None:
        unknown = UnknownTaskError(message.task)
        return DeadLetter(unknown.reason, unknown, message)
    try:
        task.check_arguments(message.args, message.kwargs)
    except TypeError as exc:
        bad = TaskArgumentsError(f"arguments do not fit {task.name}{task.parameters}: {exc}")
        return DeadLetter(bad.reason, bad, message)
    stopped = envelope.headers.get(STOPPED_HEADER)
    if stopped is not None:
        return Stopped(task, message, TimeLimitExceeded(f"hard time limit exceeded: {stopped}"))
    if message.eta is not None:
        assert now is not None
        wait_ms = delay_ms_until(message.eta, now)
        if wait_ms > HOLD_AT_MOST_MS:
            return Later(message, message.eta)
        if wait_ms > 0:  # never run early; a short wait is cheaper than another cascade
            return Run(task, message, wait_ms / 1000)
    return Run(task, message)


def decide_outcome(
    task: Task,
    message: TaskMessage,
    exception: BaseException | None,
    value: Any = None,
    *,
    clock: Callable[[], dt.datetime] = utcnow,
    random_fraction: Callable[[], float] = random.random,
) -> Verdict:
    """What follows a run that returned ``value`` or raised ``exception``."""
    if exception is None:
        return Succeed(value)
    if isinstance(exception, Terminated):  # before autoretry_for: (Exception,) would match
        return Revoked(exception)
    retry = as_retry(task, exception)
    if retry is None:
        if isinstance(exception, TimeLimitExceeded):
            return DeadLetter(dead_letters.REASON_TIME_LIMIT, exception, message)
        return DeadLetter(dead_letters.REASON_TASK_FAILED, exception, message)
    policy = task.retry_policy
    cause = retry.exc if retry.exc is not None else retry
    if policy.exhausted(message.retries, retry.max_retries):
        return DeadLetter(dead_letters.REASON_RETRIES_EXHAUSTED, cause, message)
    eta = retry.eta if isinstance(retry.eta, dt.datetime) else None
    if eta is None:
        countdown = retry.countdown
        if countdown is None:
            countdown = policy.countdown(message.retries, random_fraction)
        eta = clock() + dt.timedelta(seconds=max(0.0, countdown))
    return RetryAt(eta, message.retries + 1, cause)


def as_retry(task: Task, exception: BaseException) -> Retry | None:
    """The retry ``exception`` asks for: ``self.retry()``, or an ``autoretry_for`` match."""
    if isinstance(exception, Retry):
        return exception
    if isinstance(exception, ResultEncodeError):  # the same value would fail again
        return None
    if task.retry_policy.retries_automatically(exception):
        return Retry(exception)
    return None


# Follow-up errors that the same publish would hit again: retrying cannot help.
PERMANENT_FOLLOWUP_ERRORS: tuple[type[BaseException], ...] = (
    ResultEncodeError,
    MessageError,
    TaskArgumentsError,
    ConfigurationError,
    TypeError,
    ValueError,
    KeyError,
)


def is_permanent(error: BaseException) -> bool:
    if isinstance(error, PublishError):
        # Unroutable, or refused by the broker for good (a 403/404/406 channel error, e.g.
        # over the size limit). A nack or a missing confirm may pass once the broker recovers.
        return not isinstance(error, PublishTimeoutError | PublishNackedError)
    return isinstance(error, PERMANENT_FOLLOWUP_ERRORS)


def decide_followup_failure(
    error: BaseException, *, attempt: int, now: float, deadline: float
) -> RetryFollowups | DeadLetter:
    """``attempt`` counts failed tries so far (1 after the first); times are monotonic."""
    if not is_permanent(error):
        after = min(FOLLOWUP_BACKOFF_MAX, FOLLOWUP_BACKOFF_FIRST * 2 ** (attempt - 1))
        if now + after < deadline:
            return RetryFollowups(after)
    problem = FollowupError(
        f"the task succeeded, but its follow-ups could not be published: "
        f"{type(error).__name__}: {error}"
    )
    problem.__cause__ = error
    return DeadLetter(dead_letters.REASON_FOLLOWUP_FAILED, problem)
