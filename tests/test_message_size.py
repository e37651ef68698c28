"""The client-side maximum message size (issue 21): RabbitMQ does not tell clients its own
``max_message_size`` and closes the channel on a body over it, so rabbitq refuses such a body
before publishing, with an error that names the task, its size and the limit. No broker: the
App points at a port where nothing listens, so any attempt to publish would fail otherwise."""

from __future__ import annotations

import asyncio

import pytest

import rabbitq
from rabbitq import dead_letters
from rabbitq.message_size import DEFAULT_MAX_MESSAGE_SIZE, refuse_oversized
from rabbitq.publish_options import parse_options
from rabbitq.worker.decisions import DeadLetter, decide_followup_failure

NOWHERE = "amqp://guest:guest@127.0.0.1:1/"


def small_app() -> rabbitq.App:
    app = rabbitq.App("test", broker=NOWHERE, max_message_size=1000)

    @app.task(name="t")
    def t(data: str) -> None: ...

    return app


def test_the_default_limit_is_rabbitmq_4s_16_mib() -> None:
    assert rabbitq.App("test", broker=NOWHERE).max_message_size == 16 * 1024 * 1024
    assert DEFAULT_MAX_MESSAGE_SIZE == 16 * 1024 * 1024


def test_a_body_over_the_limit_raises_before_connecting() -> None:
    app = small_app()
    with pytest.raises(rabbitq.MessageTooLargeError) as raised:
        app.tasks["t"].delay("x" * 2000)
    error = raised.value
    assert error.task_name == "t" and error.limit == 1000 and error.size > 2000
    assert "max_message_size=1000" in str(error) and "nothing was published" in str(error)
    assert isinstance(error, rabbitq.PublishError)


def test_the_async_publish_refuses_it_too() -> None:
    app = small_app()
    with pytest.raises(rabbitq.MessageTooLargeError):
        asyncio.run(app.asend_task("t", ("x" * 2000,)))


def test_one_oversized_member_stops_the_whole_group_before_any_is_sent() -> None:
    app = small_app()
    group = rabbitq.group(app.tasks["t"].s("small"), app.tasks["t"].s("x" * 2000))
    with pytest.raises(rabbitq.MessageTooLargeError):
        group.apply_async()


def test_a_body_at_the_limit_is_allowed() -> None:
    app = small_app()
    message = app.prepare("t", ("small",), {}, parse_options({}), app.tasks["t"])
    size = len(message.envelope.body)
    refuse_oversized([message], size)  # exactly at the limit: no error
    with pytest.raises(rabbitq.MessageTooLargeError):
        refuse_oversized([message], size - 1)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "16MiB", True])
def test_a_limit_that_is_not_a_positive_int_is_refused(bad: object) -> None:
    with pytest.raises(rabbitq.ConfigurationError, match="max_message_size"):
        rabbitq.App("test", broker=NOWHERE, max_message_size=bad)  # type: ignore[arg-type]


def test_an_oversized_follow_up_is_dead_lettered_at_once_not_retried() -> None:
    error = rabbitq.MessageTooLargeError("id", "t", 2000, 1000)
    decision = decide_followup_failure(error, attempt=1, now=0.0, deadline=300.0)
    assert type(decision) is DeadLetter
    assert decision.reason == dead_letters.REASON_FOLLOWUP_FAILED
