"""Celery's signals, sent from the middleware seam with Celery's names and arguments."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import rabbitq
from rabbitq import signals
from tests.pipeline_support import harness, make_app, task_envelope

received: list[tuple[str, dict[str, Any]]] = []


@pytest.fixture(autouse=True)
def _restore_receivers() -> Iterator[None]:
    """Each spec's receivers go; those connected before it (by imported apps) stay."""
    received.clear()
    every = [getattr(signals, name) for name in signals.__all__]
    before = {
        signal: list(signal._receivers) for signal in every if isinstance(signal, signals.Signal)
    }
    yield
    for signal, receivers in before.items():
        signal._receivers = receivers


def record(name: str) -> Any:
    def receiver(**kwargs: Any) -> None:
        received.append((name, kwargs))

    return receiver


def app_with_tasks() -> rabbitq.App:
    app = make_app()

    @app.task(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="fails")
    def fails() -> None:
        raise ValueError("no")

    @app.task(name="again", bind=True)
    def again(self: rabbitq.Task) -> None:
        raise self.retry(countdown=10)

    return app


def names() -> list[str]:
    return [name for name, _ in received]


async def test_a_success_sends_prerun_success_and_postrun_with_celerys_arguments() -> None:
    for signal in (signals.task_prerun, signals.task_success, signals.task_postrun):
        signal.connect(record(signal.name))
    h = harness(app_with_tasks())
    await h.deliver(task_envelope("add", 2, 3, id="t1"))
    assert names() == ["task_prerun", "task_success", "task_postrun"]
    prerun, success, postrun = (kwargs for _, kwargs in received)
    assert prerun["task_id"] == "t1" and list(prerun["args"]) == [2, 3]
    assert prerun["sender"] is h.app.tasks["add"]
    assert success["result"] == 5
    assert postrun["retval"] == 5 and postrun["state"] == "SUCCESS"


async def test_a_task_judged_runnable_sends_task_received_with_its_request() -> None:
    signals.task_received.connect(record("task_received"))
    h = harness(app_with_tasks())
    await h.deliver(task_envelope("add", 2, 3, id="t0"))
    await h.deliver(task_envelope("nobody", id="t9"))  # never runs: no task_received
    [(_, kwargs)] = received
    assert kwargs["request"].id == "t0" and kwargs["request"].task == "add"


async def test_a_failure_sends_task_failure_with_the_exception_and_einfo() -> None:
    signals.task_failure.connect(record("task_failure"))
    h = harness(app_with_tasks())
    await h.deliver(task_envelope("fails", id="t2"))
    [(_, kwargs)] = received
    assert kwargs["task_id"] == "t2"
    assert isinstance(kwargs["exception"], ValueError)
    assert "ValueError: no" in kwargs["einfo"]


async def test_a_retry_sends_task_retry_and_not_task_failure() -> None:
    signals.task_retry.connect(record("task_retry"))
    signals.task_failure.connect(record("task_failure"))
    signals.task_postrun.connect(record("task_postrun"))
    h = harness(app_with_tasks())
    await h.deliver(task_envelope("again"))
    assert names() == ["task_postrun", "task_retry"]
    assert received[0][1]["state"] == "RETRY"


async def test_an_unknown_task_sends_task_unknown() -> None:
    signals.task_unknown.connect(record("task_unknown"))
    h = harness(app_with_tasks())
    await h.deliver(task_envelope("nobody", id="t3"))
    [(_, kwargs)] = received
    assert kwargs["name"] == "nobody" and kwargs["id"] == "t3"


async def test_an_expired_task_sends_task_revoked_with_expired_true() -> None:
    import datetime as dt

    signals.task_revoked.connect(record("task_revoked"))
    h = harness(app_with_tasks())
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    await h.deliver(task_envelope("add", 1, 1, expires=past))
    [(_, kwargs)] = received
    assert kwargs["expired"] is True and kwargs["terminated"] is False


async def test_a_receiver_that_raises_changes_nothing_for_the_task() -> None:
    def broken(**kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    signals.task_prerun.connect(broken)
    h = harness(app_with_tasks())
    delivery = await h.deliver(task_envelope("add", 1, 1))
    assert h.acks.acked == [delivery.tag]
    assert h.dead() == []


async def test_before_task_publish_can_add_a_header_that_is_published() -> None:
    @signals.before_task_publish.connect
    def inject(headers: dict[str, Any], **kwargs: Any) -> None:
        headers["traceparent"] = "00-abc-def-01"

    h = harness(app_with_tasks())
    callback = {"task": "add", "args": [1], "kwargs": {}, "options": {}}
    await h.deliver(task_envelope("add", 1, 1, callbacks=[callback]))
    [sent] = h.publisher.published
    assert sent.envelope.headers["traceparent"] == "00-abc-def-01"


def test_a_receiver_connected_for_a_sender_hears_only_that_sender() -> None:
    signals.task_success.connect(record("for add"), sender="add")
    signals.task_success.send(type("T", (), {"name": "other"})(), result=1)
    signals.task_success.send(type("T", (), {"name": "add"})(), result=2)
    assert [kwargs["result"] for _, kwargs in received] == [2]


def test_connecting_the_same_receiver_twice_calls_it_once() -> None:
    receiver = record("once")
    signals.worker_ready.connect(receiver)
    signals.worker_ready.connect(receiver)
    signals.worker_ready.send(None)
    assert len(received) == 1


def test_disconnect_removes_a_receiver() -> None:
    receiver = record("gone")
    signals.worker_ready.connect(receiver)
    assert signals.worker_ready.disconnect(receiver)
    signals.worker_ready.send(None)
    assert received == []


async def test_a_receiver_raising_system_exit_changes_nothing_for_the_task() -> None:
    def exits(**kwargs: Any) -> None:
        raise SystemExit(1)

    signals.task_success.connect(exits)
    h = harness(app_with_tasks())
    delivery = await h.deliver(task_envelope("add", 1, 1))
    assert h.acks.acked == [delivery.tag]


async def test_after_task_publish_is_sent_once_the_publish_is_confirmed() -> None:
    signals.after_task_publish.connect(record("after_task_publish"))
    h = harness(app_with_tasks())
    callback = {"task": "add", "args": [1], "kwargs": {}, "options": {}}
    await h.deliver(task_envelope("add", 1, 1, callbacks=[callback]))
    [(_, kwargs)] = received
    [sent] = h.publisher.published
    assert kwargs["sender"] == "add"
    assert kwargs["routing_key"] == sent.routing_key
    assert kwargs["headers"]["id"] == sent.envelope.headers["id"]
    assert list(kwargs["body"][0]) == [2, 1]  # the result, then the callback's own argument


async def test_worker_process_init_is_sent_at_process_start() -> None:
    signals.worker_process_init.connect(record("worker_process_init"))
    app = app_with_tasks()
    await app.middleware.emit_raising("process_start", app)
    assert names() == ["worker_process_init"]


async def test_a_failure_sends_task_postrun_with_state_failure() -> None:
    signals.task_postrun.connect(record("task_postrun"))
    h = harness(app_with_tasks())
    await h.deliver(task_envelope("fails"))
    [(_, kwargs)] = received
    assert kwargs["state"] == "FAILURE" and isinstance(kwargs["retval"], ValueError)
