"""What a dead letter looks like: the original message plus headers that say why.

The worker puts in ``<queue>.dead`` every message it cannot or will not run, with::

    rabbitq_reason                 undecodable | unknown-task | bad-arguments | expired |
                                   redelivery-limit | task-failed | retries-exhausted |
                                   followup-failed (the task succeeded; what follows it
                                   could not be sent) | unsupported (a Celery chord member) |
                                   too-large | too-deep (refused before decoding) |
                                   bad-signature (signing is on; nothing ran)
    rabbitq_exception_type         e.g. "ValueError" (when an exception is the cause)
    rabbitq_exception_message      str(exception), truncated
    rabbitq_traceback              the formatted traceback, truncated
    rabbitq_original_queue         the queue it was consumed from
    rabbitq_original_routing_key   the routing key it was published with
    rabbitq_original_exchange      the exchange it was published to
    rabbitq_dead_at                ISO 8601 time it was dead-lettered
    rabbitq_attempts               how many times it ran (retries + 1), when known
    rabbitq_followup_error         a failure's follow-ups (errbacks, FAILURE result, chord)
                                   could not be sent either: why (the dead letter still is)

Body and properties are kept byte for byte, so ``rabbitq dead replay`` can put it back as it was.
A quorum queue's ``x-delivery-count`` is not carried into the dead letter (nor into a replay):
it describes deliveries of the original, and a replayed message must start from zero.
"""

from __future__ import annotations

import datetime as dt
import time
import traceback
from dataclasses import dataclass, replace
from typing import Any

from rabbitq.delays import ROUTE, decode_delay
from rabbitq.message import BROKER_DEATH_HEADERS, SENT_AT_HEADER, Envelope, sent_at_ms
from rabbitq.redelivery import COUNT_HEADERS, QUORUM_DELIVERY_COUNT_HEADER
from rabbitq.signing import SIGNATURE_HEADER
from rabbitq.timeouts import STOPPED_HEADER
from rabbitq.topology import DEAD_SUFFIX, TASK_EXCHANGE

REASON_UNDECODABLE = "undecodable"
REASON_UNKNOWN_TASK = "unknown-task"
REASON_BAD_ARGUMENTS = "bad-arguments"
REASON_EXPIRED = "expired"
REASON_REDELIVERY_LIMIT = "redelivery-limit"
REASON_TASK_FAILED = "task-failed"
REASON_RETRIES_EXHAUSTED = "retries-exhausted"
REASON_FOLLOWUP_FAILED = "followup-failed"
REASON_TIME_LIMIT = "time-limit"
REASON_TOO_LARGE = "too-large"
REASON_TOO_DEEP = "too-deep"
REASON_BAD_SIGNATURE = "bad-signature"
REASON_UNSUPPORTED = "unsupported"

# Replay (``rabbitq dead replay``) puts the message back where it came from, resets its retry
# and redelivery counts, and drops its eta: see ``replay_target`` and ``replay_envelope``.

DEAD_LETTER_HEADERS = (
    "rabbitq_reason",
    "rabbitq_exception_type",
    "rabbitq_exception_message",
    "rabbitq_traceback",
    "rabbitq_original_queue",
    "rabbitq_original_routing_key",
    "rabbitq_original_exchange",
    "rabbitq_dead_at",
    "rabbitq_attempts",
    "rabbitq_followup_error",
)

# Headers live in one AMQP frame (128 KiB by default): a long traceback must not break it.
MAX_TRACEBACK_CHARS = 16_000
MAX_MESSAGE_CHARS = 2_000


def without_broker_headers(headers: dict[str, Any]) -> dict[str, Any]:
    """Without what the broker writes on delivery: dead-letter history and the quorum count."""
    return {
        k: v
        for k, v in headers.items()
        if k not in BROKER_DEATH_HEADERS and k != QUORUM_DELIVERY_COUNT_HEADER
    }


def dead_letter_envelope(
    original: Envelope,
    *,
    reason: str,
    queue: str,
    routing_key: str,
    exchange: str,
    exception: BaseException | None = None,
    attempts: int | None = None,
    followup_error: BaseException | None = None,
    now: dt.datetime | None = None,
) -> Envelope:
    """The envelope to publish into ``<queue>.dead``."""
    headers = without_broker_headers(dict(original.headers or {}))
    headers.update(
        {
            "rabbitq_reason": reason,
            "rabbitq_original_queue": queue,
            "rabbitq_original_routing_key": routing_key,
            "rabbitq_original_exchange": exchange,
            "rabbitq_dead_at": (now or dt.datetime.now(dt.UTC)).isoformat(),
        }
    )
    if attempts is not None:
        headers["rabbitq_attempts"] = attempts
    if exception is not None:
        headers["rabbitq_exception_type"] = type(exception).__qualname__
        headers["rabbitq_exception_message"] = bounded(str(exception), MAX_MESSAGE_CHARS)
        formatted = "".join(traceback.format_exception(exception))
        headers["rabbitq_traceback"] = bounded(formatted, MAX_TRACEBACK_CHARS, keep_end=True)
    if followup_error is not None:
        headers["rabbitq_followup_error"] = bounded(
            f"{type(followup_error).__qualname__}: {followup_error}", MAX_MESSAGE_CHARS
        )
    return replace(original, headers=headers, expiration=None)


def restored_envelope(dead: Envelope) -> Envelope:
    """The message as it was before it was dead-lettered (for replay)."""
    headers = {
        k: v
        for k, v in (dead.headers or {}).items()
        if k not in DEAD_LETTER_HEADERS and k not in BROKER_DEATH_HEADERS
    }
    return replace(dead, headers=headers)


def bounded(text: str, limit: int, *, keep_end: bool = False) -> str:
    if len(text) <= limit:
        return text
    marker = "\n...[truncated]...\n"
    if keep_end:  # the end of a traceback (where it was raised) matters most
        return marker + text[-(limit - len(marker)) :]
    return text[: limit - len(marker)] + marker


def dead_queue_name(queue: str) -> str:
    """``emails`` and ``emails.dead`` both name ``emails.dead`` (and other ``.dead`` queues)."""
    return queue if queue.endswith(".dead") else queue + ".dead"


@dataclass(frozen=True)
class DeadLetterSummary:
    """What ``rabbitq dead list`` shows of one dead letter."""

    id: str
    task: str
    reason: str
    dead_at: str
    attempts: int | None
    exception: str
    original_queue: str
    original_routing_key: str

    @classmethod
    def of(cls, envelope: Envelope) -> DeadLetterSummary:
        headers = envelope.headers or {}
        error_type = headers.get("rabbitq_exception_type")
        error_text = headers.get("rabbitq_exception_message", "")
        attempts = headers.get("rabbitq_attempts")
        return cls(
            id=str(headers.get("id") or envelope.message_id or ""),
            task=str(headers.get("task") or ""),
            reason=str(headers.get("rabbitq_reason") or _broker_reason(headers)),
            dead_at=str(headers.get("rabbitq_dead_at") or ""),
            attempts=attempts if isinstance(attempts, int) else None,
            exception=f"{error_type}: {error_text}" if error_type else "",
            original_queue=str(headers.get("rabbitq_original_queue") or ""),
            original_routing_key=str(headers.get("rabbitq_original_routing_key") or ""),
        )


def _broker_reason(headers: dict[str, Any]) -> str:
    # Dead-lettered by RabbitMQ itself (message TTL, max-length): x-death says why.
    reason = headers.get("x-first-death-reason")
    return f"broker: {reason}" if reason else "unknown"


@dataclass(frozen=True)
class ReplayTarget:
    exchange: str
    routing_key: str


def replay_target(dead: Envelope, dead_queue: str, routing_key: str) -> ReplayTarget:
    """Where a dead letter goes back to: the one queue it came from, when that is known.

    ``routing_key`` is the key the dead letter itself arrived with: for the delay system's
    ``rabbitq.delay.dead`` it still spells the destination.
    """
    headers = dead.headers or {}
    original_queue = headers.get("rabbitq_original_queue") or headers.get("x-first-death-queue")
    if original_queue:
        return ReplayTarget("", str(original_queue))
    delayed = decode_delay(routing_key)
    if delayed is not None:
        _delay, kind, destination = delayed
        return (
            ReplayTarget(TASK_EXCHANGE, destination)
            if kind == ROUTE
            else ReplayTarget("", destination)
        )
    return ReplayTarget("", dead_queue.removesuffix(DEAD_SUFFIX))


def replay_envelope(dead: Envelope, now: float | None = None) -> Envelope:
    """The message as it was, with a fresh start: retries and redelivery count reset, and
    its sent-at (if it has one) set to ``now`` (``time.time()``): a replay is a new publish,
    and its wait for a worker starts there, not at the original's. Its ``eta`` is dropped
    unless the message is signed (see below)."""
    restored = restored_envelope(dead)
    headers = {
        k: v
        for k, v in restored.headers.items()
        if k not in COUNT_HEADERS and k != STOPPED_HEADER  # its stopped run is over
    }
    if "retries" in headers:
        headers["retries"] = 0
    if SIGNATURE_HEADER not in headers:
        # Replayed means "run now". A signed message keeps its eta, which signs with it:
        # replay does not sign (a forged dead letter must not come back runnable), and an eta
        # in the past runs now all the same.
        headers.pop("eta", None)
    if SENT_AT_HEADER in headers:
        headers[SENT_AT_HEADER] = sent_at_ms(time.time() if now is None else now)
    return replace(restored, headers=headers)
