"""The rules of time limits and of the broker's consumer_timeout (``rabbitq/timeouts.py``)."""

from __future__ import annotations

import pytest

import rabbitq
from rabbitq.errors import ConfigurationError
from rabbitq.message import TaskMessage
from rabbitq.timeouts import (
    ceiling,
    check_consumer_timeout,
    declared_limits,
    limits_for,
    tasks_over_the_ceiling,
    too_late_to_start,
)

app = rabbitq.App("timeouts", broker="amqp://guest:guest@127.0.0.1:1/")


@app.task(name="limited", time_limit=60, soft_time_limit=50)
def limited() -> None: ...


@app.task(name="free")
def free() -> None: ...


def message(soft: float | None = None, hard: float | None = None) -> TaskMessage:
    return TaskMessage(task="limited", timelimit=(soft, hard))


def test_the_messages_limits_win_over_the_tasks() -> None:
    assert declared_limits(app.tasks["limited"], message(5, 10)) == (5, 10)


def test_a_message_without_limits_takes_the_tasks() -> None:
    assert declared_limits(app.tasks["limited"], message()) == (50, 60)


def test_zero_or_negative_limits_mean_none() -> None:
    assert declared_limits(app.tasks["free"], message(0, -1)) == (None, None)


def test_a_run_without_limits_and_without_consumer_timeout_has_none() -> None:
    assert limits_for(app.tasks["free"], message(), None) is None


def test_the_ceiling_keeps_a_margin_of_a_tenth_up_to_a_minute() -> None:
    assert ceiling(1800) == 1740
    assert ceiling(100) == 90
    assert ceiling(None) is None


def test_every_run_stops_before_the_consumer_timeout() -> None:
    limits = limits_for(app.tasks["free"], message(), 1800)
    assert limits is not None and limits.hard == 1740 and limits.capped


def test_a_limit_under_the_ceiling_is_kept() -> None:
    limits = limits_for(app.tasks["limited"], message(), 1800)
    assert limits is not None and (limits.soft, limits.hard, limits.capped) == (50, 60, False)


def test_time_spent_waiting_for_a_slot_comes_off_the_ceiling() -> None:
    limits = limits_for(app.tasks["free"], message(), 1800, waited=740)
    assert limits is not None and limits.hard == 1000


def test_a_soft_limit_at_or_after_the_hard_one_is_dropped() -> None:
    limits = limits_for(app.tasks["free"], message(10, 10), None)
    assert limits is not None and limits.soft is None and limits.hard == 10


def test_a_message_that_waited_past_nine_tenths_of_its_window_is_not_started() -> None:
    assert not too_late_to_start(1800, 1500)
    assert too_late_to_start(1800, 1600)
    assert not too_late_to_start(None, 10**9)


def test_tasks_whose_own_limits_pass_the_ceiling_are_named() -> None:
    assert tasks_over_the_ceiling(app.tasks, 60) == ["limited (time_limit=60s)"]
    assert tasks_over_the_ceiling(app.tasks, 1800) == []
    assert tasks_over_the_ceiling(app.tasks, None) == []


def test_a_consumer_timeout_must_be_positive_or_none() -> None:
    with pytest.raises(ConfigurationError):
        check_consumer_timeout(0)
    assert check_consumer_timeout(None) is None


def test_an_app_refuses_a_non_positive_time_limit() -> None:
    other = rabbitq.App("limits", broker="amqp://guest:guest@127.0.0.1:1/")
    with pytest.raises(ConfigurationError, match="time_limit must be positive"):
        other.task(name="bad", time_limit=0)(lambda: None)


def test_app_wide_time_limits_apply_to_tasks_that_set_none() -> None:
    other = rabbitq.App(
        "limits", broker="amqp://guest:guest@127.0.0.1:1/", task_time_limit=30,
        task_soft_time_limit=20,
    )  # fmt: skip
    own = other.task(name="own", time_limit=5)(lambda: None)
    default = other.task(name="default")(lambda: None)
    assert (own.time_limit, own.soft_time_limit) == (5, 20)
    assert (default.time_limit, default.soft_time_limit) == (30, 20)
