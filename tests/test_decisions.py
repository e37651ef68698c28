"""The pure decisions of the worker's pipeline."""

from __future__ import annotations

import datetime as dt

import rabbitq
from rabbitq import dead_letters
from rabbitq.errors import (
    PublishNackedError,
    PublishTimeoutError,
    ResultBackendError,
    ResultEncodeError,
    TimeLimitExceeded,
    UnroutableError,
)
from rabbitq.message import decode_task
from rabbitq.timeouts import STOPPED_HEADER
from rabbitq.worker.decisions import (
    FOLLOWUP_BACKOFF_MAX,
    DeadLetter,
    Later,
    RetryAt,
    RetryFollowups,
    Revoked,
    Run,
    Stopped,
    decide_arrival,
    decide_followup_failure,
    decide_outcome,
    is_permanent,
)
from tests.pipeline_support import make_app, task_envelope

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def app() -> rabbitq.App:
    application = make_app()

    @application.task(name="t", max_retries=2, default_retry_delay=7, retry_jitter=False)
    def t(x: int = 0) -> None: ...

    return application


def test_a_message_due_within_a_second_runs_after_a_short_wait() -> None:
    envelope = task_envelope("t", eta=NOW + dt.timedelta(milliseconds=400))
    action = decide_arrival(
        envelope, redelivered=False, tasks=app().tasks, redelivery_limit=5, clock=lambda: NOW
    )
    assert isinstance(action, Run) and 0.39 < action.wait_s <= 0.4


def test_a_message_due_later_goes_back_to_the_delay_levels() -> None:
    eta = NOW + dt.timedelta(seconds=5)
    action = decide_arrival(
        task_envelope("t", eta=eta),
        redelivered=False,
        tasks=app().tasks,
        redelivery_limit=5,
        clock=lambda: NOW,
    )
    assert isinstance(action, Later) and action.eta == eta


def test_a_retry_without_countdown_uses_the_policy_delay() -> None:
    application = app()
    task = application.tasks["t"]
    from rabbitq.message import decode_task

    message = decode_task(task_envelope("t"))
    verdict = decide_outcome(task, message, rabbitq.errors.Retry(), clock=lambda: NOW)
    assert isinstance(verdict, RetryAt)
    assert (verdict.eta, verdict.retries) == (NOW + dt.timedelta(seconds=7), 1)


def test_an_unencodable_result_is_never_retried_even_if_autoretry_matches() -> None:
    application = make_app()

    @application.task(name="r", autoretry_for=(Exception,))
    def r() -> None: ...

    from rabbitq.message import decode_task

    message = decode_task(task_envelope("r"))
    verdict = decide_outcome(r, message, ResultEncodeError("no"), clock=lambda: NOW)
    assert isinstance(verdict, DeadLetter) and verdict.reason == dead_letters.REASON_TASK_FAILED


def test_unroutable_and_unencodable_followups_are_permanent() -> None:
    assert is_permanent(UnroutableError("k"))
    assert is_permanent(ResultEncodeError("x"))
    assert is_permanent(ValueError("malformed signature"))


def test_lost_confirms_nacks_and_an_unreachable_redis_are_transient() -> None:
    assert not is_permanent(PublishTimeoutError("x"))
    assert not is_permanent(PublishNackedError("x"))
    assert not is_permanent(ResultBackendError("x"))
    assert not is_permanent(ConnectionError("x"))


def test_transient_followup_failures_back_off_doubling_up_to_a_cap() -> None:
    waits = [
        decide_followup_failure(PublishTimeoutError("x"), attempt=n, now=0, deadline=1e9)
        for n in (1, 2, 3, 10)
    ]
    assert waits == [
        RetryFollowups(0.5),
        RetryFollowups(1.0),
        RetryFollowups(2.0),
        RetryFollowups(FOLLOWUP_BACKOFF_MAX),
    ]


def test_a_transient_followup_failure_past_the_deadline_is_dead_lettered() -> None:
    decision = decide_followup_failure(PublishTimeoutError("x"), attempt=1, now=10, deadline=10)
    assert isinstance(decision, DeadLetter)
    assert decision.reason == dead_letters.REASON_FOLLOWUP_FAILED
    assert isinstance(decision.error.__cause__, PublishTimeoutError)


def test_a_permanent_followup_failure_is_dead_lettered_at_once() -> None:
    decision = decide_followup_failure(UnroutableError("k"), attempt=1, now=0, deadline=1e9)
    assert isinstance(decision, DeadLetter)


def test_a_run_stopped_at_its_hard_limit_is_dead_lettered_time_limit() -> None:
    application = make_app()
    task = application.task(name="slow")(lambda: None)
    message = decode_task(task_envelope("slow"))
    verdict = decide_outcome(task, message, TimeLimitExceeded("hard time limit (1s) exceeded"))
    assert isinstance(verdict, DeadLetter) and verdict.reason == dead_letters.REASON_TIME_LIMIT


def test_a_run_stopped_at_its_hard_limit_is_retried_when_autoretry_names_it() -> None:
    application = make_app()
    task = application.task(name="slow", autoretry_for=(TimeLimitExceeded,))(lambda: None)
    message = decode_task(task_envelope("slow"))
    assert isinstance(decide_outcome(task, message, TimeLimitExceeded("x")), RetryAt)


def test_a_parked_copy_of_a_stopped_run_is_concluded_without_running() -> None:
    application = make_app()
    application.task(name="slow")(lambda: None)
    envelope = task_envelope("slow")
    envelope.headers[STOPPED_HEADER] = "1s in 1@host"
    tasks = application.tasks
    action = decide_arrival(envelope, redelivered=False, tasks=tasks, redelivery_limit=5)
    assert isinstance(action, Stopped) and "1s in 1@host" in str(action.error)


def test_a_run_terminated_by_a_revoke_is_revoked_not_retried_even_if_autoretry_matches() -> None:
    application = make_app()
    task = application.task(name="stopped", autoretry_for=(Exception,))(lambda: None)
    message = decode_task(task_envelope("stopped"))
    verdict = decide_outcome(task, message, rabbitq.Terminated("revoked and terminated"))
    assert isinstance(verdict, Revoked)
