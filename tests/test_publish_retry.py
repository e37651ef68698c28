"""Publish retries (Celery's retry/retry_policy): the policy, where it comes from, and the
loop that applies it. Against a real broker: integration/test_publish_retry.py."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence

import pytest

import rabbitq
from rabbitq import publish_retry
from rabbitq.errors import PublishConnectionError, PublishError, PublishTimeoutError
from rabbitq.publish_options import parse_options
from rabbitq.publish_retry import NO_RETRY, PublishRetryPolicy, publish_retrying


@pytest.fixture
def app() -> rabbitq.App:
    return rabbitq.App("test", broker="amqp://guest:guest@127.0.0.1:1/")


def test_the_default_policy_is_celerys() -> None:
    assert PublishRetryPolicy() == PublishRetryPolicy(
        max_retries=3, interval_start=0, interval_step=0.2, interval_max=1
    )


def test_waits_grow_by_the_step_up_to_start_plus_max_as_kombu_does() -> None:
    assert list(PublishRetryPolicy().waits()) == [0.0, 0.2, 0.4]
    policy = PublishRetryPolicy(max_retries=5, interval_start=1, interval_step=2, interval_max=3)
    assert list(policy.waits()) == [1, 3, 4, 4, 4]


def test_max_retries_none_retries_without_limit() -> None:
    waits = PublishRetryPolicy(max_retries=None).waits()
    assert len(list(itertools.islice(waits, 100))) == 100


def test_the_app_default_is_retry_with_celerys_policy(app: rabbitq.App) -> None:
    assert app._publish_retry(parse_options({}), None) == PublishRetryPolicy()


def test_retry_false_means_no_retry(app: rabbitq.App) -> None:
    assert app._publish_retry(parse_options({"retry": False}), None) == NO_RETRY


def test_a_call_policy_merges_over_the_task_and_app_policies() -> None:
    app = rabbitq.App(
        "t", broker="amqp://127.0.0.1:1/", task_publish_retry_policy={"interval_max": 1}
    )
    task = app.task(name="t", publish_retry_policy={"interval_step": 0.5})(lambda: None)
    policy = app._publish_retry(parse_options({"retry_policy": {"max_retries": 9}}), task)
    assert policy == PublishRetryPolicy(max_retries=9, interval_step=0.5, interval_max=1)


def test_the_call_wins_over_the_task_and_the_task_over_the_app() -> None:
    app = rabbitq.App("t", broker="amqp://127.0.0.1:1/", task_publish_retry=False)
    plain = app.task(name="plain")(lambda: None)
    retrying = app.task(name="retrying", publish_retry=True)(lambda: None)
    assert app._publish_retry(parse_options({}), plain) == NO_RETRY
    assert app._publish_retry(parse_options({}), retrying) == PublishRetryPolicy()
    assert app._publish_retry(parse_options({"retry": False}), retrying) == NO_RETRY


def test_an_unknown_policy_key_is_refused(app: rabbitq.App) -> None:
    task = app.task(name="t")(lambda: None)
    with pytest.raises(rabbitq.ConfigurationError, match=r"unknown retry_policy key.*max_retry"):
        task.apply_async(retry_policy={"max_retry": 1})


def test_a_bad_task_policy_is_refused_at_registration(app: rabbitq.App) -> None:
    with pytest.raises(rabbitq.ConfigurationError, match="interval_start must be seconds"):
        app.task(name="t", publish_retry_policy={"interval_start": -1})(lambda: None)


def test_a_bad_app_policy_is_refused_at_construction() -> None:
    with pytest.raises(rabbitq.ConfigurationError, match="max_retries must be"):
        rabbitq.App("t", task_publish_retry_policy={"max_retries": -1})


def test_retry_errors_name_publish_errors_only(app: rabbitq.App) -> None:
    task = app.task(name="t")(lambda: None)
    with pytest.raises(rabbitq.ConfigurationError, match="PublishError subclasses only"):
        task.apply_async(retry_policy={"retry_errors": (ValueError,)})


class Attempts:
    """A publish that fails with the given errors, then succeeds (the loop, not a broker)."""

    def __init__(self, *errors: PublishError | None) -> None:
        self.errors = list(errors)
        self.times: list[float] = []

    def __call__(self, items: Sequence[str], timeout: float) -> list[PublishError | None]:
        self.times.append(time.monotonic())
        error = self.errors.pop(0) if self.errors else None
        return [error for _ in items]


def lost() -> PublishConnectionError:
    return PublishConnectionError("lost")


def test_connection_errors_are_retried_up_to_max_retries_then_returned() -> None:
    attempts = Attempts(lost(), lost(), lost(), lost(), lost())
    outcomes = publish_retrying(attempts, ["m"], PublishRetryPolicy(), 30)
    assert len(attempts.times) == 4  # the first attempt and 3 retries
    assert isinstance(outcomes[0], PublishConnectionError)


def test_a_retry_that_succeeds_returns_success() -> None:
    assert publish_retrying(Attempts(lost(), None), ["m"], PublishRetryPolicy(), 30) == [None]


def test_other_errors_are_not_retried_unless_in_retry_errors() -> None:
    timeout = PublishTimeoutError("slow")
    attempts = Attempts(timeout, None)
    assert publish_retrying(attempts, ["m"], PublishRetryPolicy(), 30) == [timeout]
    policy = PublishRetryPolicy(retry_errors=(PublishTimeoutError,))
    assert publish_retrying(Attempts(timeout, None), ["m"], policy, 30) == [None]


class FakeTime:
    """The retry loop's clock, moved only by its own sleeps: no real waiting, no load."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_the_publish_timeout_ends_retries_before_the_policy_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeTime()
    monkeypatch.setattr(publish_retry, "time", clock)
    attempts = Attempts(*[lost() for _ in range(100)])
    policy = PublishRetryPolicy(max_retries=None, interval_start=0.1, interval_step=0)
    outcomes = publish_retrying(attempts, ["m"], policy, 0.35)
    # Attempts at 0, 0.1, 0.2 and 0.3; the next wait would pass the deadline.
    assert len(attempts.times) == 4 and isinstance(outcomes[0], PublishConnectionError)
    assert clock.now < 0.35


def test_only_the_failed_items_of_a_batch_are_published_again() -> None:
    seen: list[list[str]] = []

    def publish(items: Sequence[str], timeout: float) -> list[PublishError | None]:
        seen.append(list(items))
        return [lost() if item == "b" and len(seen) == 1 else None for item in items]

    assert publish_retrying(publish, ["a", "b", "c"], PublishRetryPolicy(), 30) == [None] * 3
    assert seen == [["a", "b", "c"], ["b"]]
