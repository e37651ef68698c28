"""The middleware seam: which hooks run, when, and what their errors mean."""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
from typing import Any

import pytest

import rabbitq
from rabbitq import dead_letters
from rabbitq.app import PreparedMessage
from rabbitq.errors import ConfigurationError, SkipTask
from rabbitq.middleware import DeadLettered, Middleware, MiddlewareStack, Outcome, TaskContext
from tests.pipeline_support import harness, make_app, task_envelope

trace_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("trace_id", default=None)


class Recorder(Middleware):
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def message_received(self, delivery: Any) -> None:
        self.calls.append(("received", delivery.tag))

    def task_received(self, context: TaskContext) -> None:
        self.calls.append(("task received", context.task.name))

    def before_process(self, context: TaskContext) -> None:
        self.calls.append(("before", context.task.name))

    def after_process(self, context: TaskContext, outcome: Outcome) -> None:
        self.calls.append(("after", (outcome.value, type(outcome.exception), outcome.retried)))

    def after_retry(self, context: TaskContext, exception: BaseException, eta: dt.datetime) -> None:
        self.calls.append(("retry", type(exception)))

    def after_dead_letter(self, dead: DeadLettered) -> None:
        self.calls.append(("dead", (dead.reason, dead.queue)))

    def after_skip(self, context: TaskContext, reason: str) -> None:
        self.calls.append(("skip", reason))


def app_with(*middleware: Middleware) -> rabbitq.App:
    app = make_app(middleware=list(middleware))

    @app.task(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="fails")
    def fails() -> None:
        raise ValueError("no")

    @app.task(name="again", bind=True)
    def again(self: rabbitq.Task) -> None:
        raise self.retry(countdown=10)

    @app.task(name="traced")
    def traced() -> str | None:
        return trace_id.get()

    return app


async def test_hooks_see_a_run_from_receipt_to_outcome_in_order() -> None:
    recorder = Recorder()
    h = harness(app_with(recorder))
    delivery = await h.deliver(task_envelope("add", 2, 3))
    assert recorder.calls == [
        ("received", delivery.tag),
        ("task received", "add"),
        ("before", "add"),
        ("after", (5, type(None), False)),
    ]


async def test_task_received_is_not_called_for_a_message_that_never_runs() -> None:
    recorder = Recorder()
    h = harness(app_with(recorder))
    await h.deliver(task_envelope("nobody"))
    assert [name for name, _ in recorder.calls] == ["received", "dead"]


async def test_runtime_counts_from_the_run_not_from_task_received() -> None:
    seen: list[float] = []

    class Slow(Middleware):
        async def task_received(self, context: TaskContext) -> None:
            await asyncio.sleep(0.2)  # a wait before the run (a slot, a short eta)

        def after_process(self, context: TaskContext, outcome: Outcome) -> None:
            seen.append(context.runtime)

    h = harness(app_with(Slow()))
    await h.deliver(task_envelope("add", 1, 1))
    assert seen[0] < 0.2


async def test_after_process_marks_an_exception_that_asked_for_a_retry() -> None:
    recorder = Recorder()
    h = harness(app_with(recorder))
    await h.deliver(task_envelope("again"))
    assert recorder.calls[-2] == ("after", (None, rabbitq.errors.Retry, True))
    assert recorder.calls[-1] == ("retry", rabbitq.errors.Retry)


async def test_after_dead_letter_names_the_reason_and_the_queue() -> None:
    recorder = Recorder()
    h = harness(app_with(recorder))
    await h.deliver(task_envelope("fails"))
    assert recorder.calls[-1] == ("dead", (dead_letters.REASON_TASK_FAILED, "work.dead"))


async def test_skip_task_in_before_process_acks_without_running() -> None:
    class Refuse(Recorder):
        def before_process(self, context: TaskContext) -> None:
            raise SkipTask("revoked")

    refuse = Refuse()
    h = harness(app_with(refuse))
    delivery = await h.deliver(task_envelope("add", 1, 1))
    assert h.acks.acked == [delivery.tag]
    assert h.publisher.published == []
    assert refuse.calls[-1] == ("skip", "revoked")
    assert h.stats.skipped == 1


async def test_an_error_in_before_process_is_the_tasks_failure() -> None:
    class Broken(Middleware):
        def before_process(self, context: TaskContext) -> None:
            raise RuntimeError("middleware bug")

    h = harness(app_with(Broken()))
    delivery = await h.deliver(task_envelope("add", 1, 1))
    [dead] = h.dead()
    assert dead.envelope.headers["rabbitq_reason"] == dead_letters.REASON_TASK_FAILED
    assert dead.envelope.headers["rabbitq_exception_message"] == "middleware bug"
    assert h.acks.acked == [delivery.tag]


async def test_an_error_in_an_observing_hook_is_logged_and_the_task_still_acked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(Middleware):
        def after_process(self, context: TaskContext, outcome: Outcome) -> None:
            raise RuntimeError("observer bug")

    h = harness(app_with(Broken()))
    delivery = await h.deliver(task_envelope("add", 1, 1))
    assert h.acks.acked == [delivery.tag]
    assert "observer bug" in caplog.text


async def test_async_hooks_are_awaited() -> None:
    class Async(Middleware):
        def __init__(self) -> None:
            self.seen: list[str] = []

        async def before_process(self, context: TaskContext) -> None:
            self.seen.append(context.request.id)

    middleware = Async()
    h = harness(app_with(middleware))
    await h.deliver(task_envelope("add", 1, 1, id="the-id"))
    assert middleware.seen == ["the-id"]


async def test_a_context_variable_set_in_before_process_is_seen_by_a_thread_task() -> None:
    class Tracing(Middleware):
        def __init__(self) -> None:
            self.results: list[Any] = []

        def before_process(self, context: TaskContext) -> None:
            trace_id.set(f"trace-{context.request.id}")

        def after_process(self, context: TaskContext, outcome: Outcome) -> None:
            self.results.append(outcome.value)

    tracing = Tracing()
    h = harness(app_with(tracing))
    await h.deliver(task_envelope("traced", id="abc"))
    assert tracing.results == ["trace-abc"]


def test_a_hook_that_is_not_overridden_is_not_called() -> None:
    stack = MiddlewareStack([Recorder()])
    assert stack.has("before_process")
    assert not stack.has("worker_start")


def test_publish_hooks_must_be_plain_functions() -> None:
    class AsyncPublish(Middleware):
        async def before_publish(self, app: rabbitq.App, message: PreparedMessage) -> None:  # type: ignore[override]
            return None

    with pytest.raises(ConfigurationError, match="plain function"):
        MiddlewareStack([AsyncPublish()])


def test_only_middleware_instances_are_accepted() -> None:
    with pytest.raises(ConfigurationError, match="Middleware instances"):
        make_app(middleware=[Recorder])  # the class, not an instance


async def test_publish_hooks_run_around_each_confirmed_publish() -> None:
    class Stamp(Middleware):
        def __init__(self) -> None:
            self.after: list[str] = []

        def before_publish(self, app: rabbitq.App, message: PreparedMessage) -> None:
            message.envelope.headers["x-stamp"] = "yes"

        def after_publish(self, app: rabbitq.App, message: PreparedMessage) -> None:
            self.after.append(message.task_id)

    stamp = Stamp()
    app = app_with(stamp)
    h = harness(app)
    callback = {"task": "add", "args": [1], "kwargs": {}, "options": {}}
    await h.deliver(task_envelope("add", 1, 1, callbacks=[callback]))
    [sent] = h.publisher.published
    assert sent.envelope.headers["x-stamp"] == "yes"
    assert stamp.after == [sent.envelope.headers["id"]]


def test_add_middleware_appends_after_the_installed_ones() -> None:
    app = make_app()
    recorder = Recorder()
    app.add_middleware(recorder)
    assert list(app.middleware)[-1] is recorder


def _prepared(app: rabbitq.App) -> PreparedMessage:
    from rabbitq.publish_options import parse_options

    return app.prepare("add", (1, 2), {}, parse_options({}))


async def test_an_error_in_before_publish_stops_the_publish() -> None:
    class Refuses(Middleware):
        def before_publish(self, app: rabbitq.App, message: PreparedMessage) -> None:
            raise PermissionError("not from here")

    from tests.pipeline_support import InMemoryPublisher

    app = app_with(Refuses())
    publisher = InMemoryPublisher()
    with pytest.raises(PermissionError):
        await app.apublish_prepared([_prepared(app)], publisher)  # type: ignore[arg-type]
    assert publisher.published == []


async def test_an_error_in_after_publish_is_logged_and_the_publish_stands(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(Middleware):
        def after_publish(self, app: rabbitq.App, message: PreparedMessage) -> None:
            raise RuntimeError("after_publish bug")

    from tests.pipeline_support import InMemoryPublisher

    app = app_with(Broken())
    publisher = InMemoryPublisher()
    await app.apublish_prepared([_prepared(app)], publisher)  # type: ignore[arg-type]
    assert len(publisher.published) == 1
    assert "after_publish bug" in caplog.text


async def test_task_request_answers_in_before_process() -> None:
    class Reads(Middleware):
        def __init__(self) -> None:
            self.seen: list[str | None] = []

        def before_process(self, context: TaskContext) -> None:
            request = context.task.request
            self.seen.append(request.id if request else None)

    reads = Reads()
    h = harness(app_with(reads))
    await h.deliver(task_envelope("add", 1, 1, id="req-id"))
    assert reads.seen == ["req-id"]


async def test_system_exit_from_an_observing_hook_is_logged_and_the_task_still_acked() -> None:
    import sys

    class Exits(Middleware):
        def after_process(self, context: TaskContext, outcome: Outcome) -> None:
            sys.exit("observer bug")

    h = harness(app_with(Exits()))
    delivery = await h.deliver(task_envelope("add", 1, 1))
    assert h.acks.acked == [delivery.tag]


async def test_a_decorated_coroutine_hook_is_awaited_too() -> None:
    import functools

    seen: list[str] = []

    def traced(function: Any) -> Any:
        @functools.wraps(function)
        def wrapper(*args: Any) -> Any:
            return function(*args)  # returns the coroutine: not an ``async def`` itself

        return wrapper

    class Decorated(Middleware):
        @traced
        async def before_process(self, context: TaskContext) -> None:
            seen.append(context.request.id)

    h = harness(app_with(Decorated()))
    await h.deliver(task_envelope("add", 1, 1, id="deco"))
    assert seen == ["deco"]


async def test_hooks_run_in_order_even_when_one_is_async() -> None:
    order: list[str] = []

    class First(Middleware):
        async def before_process(self, context: TaskContext) -> None:
            order.append("first")

    class Second(Middleware):
        def before_process(self, context: TaskContext) -> None:
            order.append("second")

    h = harness(app_with(First(), Second()))
    await h.deliver(task_envelope("add", 1, 1))
    assert order == ["first", "second"]


async def test_an_async_observing_hook_that_raises_does_not_stop_the_next() -> None:
    seen: list[str] = []

    class AsyncBroken(Middleware):
        async def after_process(self, context: TaskContext, outcome: Outcome) -> None:
            raise RuntimeError("async observer bug")

    class After(Middleware):
        def after_process(self, context: TaskContext, outcome: Outcome) -> None:
            seen.append(context.request.id)

    h = harness(app_with(AsyncBroken(), After()))
    delivery = await h.deliver(task_envelope("add", 1, 1, id="next-runs"))
    assert seen == ["next-runs"]
    assert h.acks.acked == [delivery.tag]
