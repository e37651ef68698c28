from __future__ import annotations

from rabbitq import dead_letters, errors
from rabbitq.dead_letters import (
    MAX_TRACEBACK_CHARS,
    dead_letter_envelope,
    restored_envelope,
)
from rabbitq.message import Envelope


def _failure() -> ValueError:
    try:
        raise ValueError("boom")
    except ValueError as exc:
        return exc


def test_dead_letter_says_why_where_from_and_how_often() -> None:
    original = Envelope(body=b"body", headers={"task": "t"}, message_id="m")
    dead = dead_letter_envelope(
        original,
        reason="task-failed",
        queue="emails",
        routing_key="emails.welcome",
        exchange="rabbitq",
        exception=_failure(),
        attempts=3,
    )
    assert dead.body == b"body"
    assert dead.headers["rabbitq_reason"] == "task-failed"
    assert dead.headers["rabbitq_exception_type"] == "ValueError"
    assert dead.headers["rabbitq_exception_message"] == "boom"
    assert "raise ValueError" in dead.headers["rabbitq_traceback"]
    assert dead.headers["rabbitq_original_queue"] == "emails"
    assert dead.headers["rabbitq_original_routing_key"] == "emails.welcome"
    assert dead.headers["rabbitq_attempts"] == 3
    assert dead.headers["task"] == "t"


def test_dead_letter_drops_the_brokers_death_headers() -> None:
    original = Envelope(body=b"", headers={"x-death": [{}], "x-first-death-queue": "q"})
    dead = dead_letter_envelope(
        original, reason="expired", queue="q", routing_key="q", exchange="rabbitq"
    )
    assert "x-death" not in dead.headers and "x-first-death-queue" not in dead.headers


def test_huge_traceback_is_truncated_to_fit_one_frame() -> None:
    error = ValueError("x" * 100_000)
    error.__traceback__ = None
    dead = dead_letter_envelope(
        Envelope(body=b"", headers={}),
        reason="task-failed",
        queue="q",
        routing_key="q",
        exchange="rabbitq",
        exception=error,
    )
    assert len(dead.headers["rabbitq_traceback"]) <= MAX_TRACEBACK_CHARS
    assert len(dead.headers["rabbitq_exception_message"]) <= 2_000


def test_restored_envelope_is_the_original_message() -> None:
    original = Envelope(body=b"b", headers={"task": "t", "custom": 1}, message_id="m")
    dead = dead_letter_envelope(
        original,
        reason="unknown-task",
        queue="q",
        routing_key="q",
        exchange="rabbitq",
        exception=_failure(),
    )
    assert restored_envelope(dead).headers == original.headers


def test_every_reason_an_incoming_message_is_refused_with_is_a_reason_constant() -> None:
    # The worker dead-letters a refused message with its error's ``reason``; each must be
    # one that readers of dead letters (CLI, dashboard, events) can name by its constant.
    constants = {v for k, v in vars(dead_letters).items() if k.startswith("REASON_")}
    refusals: list[type[errors.MessageError] | type[errors.TaskArgumentsError]] = [
        errors.TaskArgumentsError
    ]
    pending = list(errors.MessageError.__subclasses__())
    while pending:
        error = pending.pop()
        refusals.append(error)
        pending.extend(error.__subclasses__())
    assert {error.reason for error in refusals} <= constants
    assert errors.UnsupportedMessageError.reason == dead_letters.REASON_UNSUPPORTED
