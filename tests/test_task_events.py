"""Task events from the pipeline's hooks: Celery 5's names, fields and types, and where a
message ended (``rabbitq.events.task_events``)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import rabbitq
from rabbitq.errors import SkipTask
from rabbitq.events.dispatcher import EventDispatcher
from rabbitq.events.task_events import TaskEvents
from rabbitq.message import Envelope
from rabbitq.middleware import Middleware, TaskContext
from tests.pipeline_support import Harness, harness, make_app, task_envelope

# What Celery 5 puts in each event (celery/worker/request.py, strategy.py, app/trace.py),
# besides what every event carries.
EVERY_EVENT = {"type", "hostname", "timestamp", "utcoffset", "pid", "clock"}
CELERY_FIELDS = {
    "task-received": {
        "uuid", "name", "args", "kwargs", "root_id", "parent_id", "retries", "eta", "expires",
    },
    "task-started": {"uuid"},
    "task-succeeded": {"uuid", "result", "runtime"},
    "task-failed": {"uuid", "exception", "traceback"},
    "task-retried": {"uuid", "exception", "traceback"},
    "task-rejected": {"uuid", "requeue"},
    "task-revoked": {"uuid", "terminated", "signum", "expired"},
}  # fmt: skip


def app_with(*middleware: Middleware) -> rabbitq.App:
    app = make_app(middleware=list(middleware))

    @app.task(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="fails")
    def fails() -> None:
        raise ValueError("no")

    @app.task(name="again", bind=True, max_retries=1)
    def again(self: rabbitq.Task) -> None:
        raise self.retry(exc=KeyError("busy"), countdown=10)

    return app


def events_of(h: Harness) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for sent in h.publisher.events:
        body = json.loads(sent.envelope.body)
        events += body if isinstance(body, list) else [body]
    return events


async def run(*envelopes: Envelope, middleware: tuple[Middleware, ...] = ()) -> Harness:
    h = harness(app_with(*middleware))
    dispatcher = EventDispatcher(
        "rabbitq@test",
        h.publisher.send_event,
        schedule=lambda flush: asyncio.get_running_loop().call_soon(flush),
    )
    h.pipeline.middleware = h.pipeline.middleware.added(TaskEvents(dispatcher))
    for envelope in envelopes:
        await h.deliver(envelope)
    await asyncio.sleep(0)  # the loop turn that sends the batch
    return h


def types(h: Harness) -> list[str]:
    return [event["type"] for event in events_of(h)]


async def test_a_success_sends_received_started_and_succeeded_with_celerys_fields() -> None:
    h = await run(task_envelope("add", 2, 3, id="t1"))
    received, started, succeeded = events_of(h)
    assert [received["type"], started["type"], succeeded["type"]] == [
        "task-received", "task-started", "task-succeeded",
    ]  # fmt: skip
    for event in (received, started, succeeded):
        assert set(event) >= EVERY_EVENT | CELERY_FIELDS[event["type"]]
        assert event["uuid"] == "t1" and event["hostname"] == "rabbitq@test"
        assert isinstance(event["timestamp"], float) and isinstance(event["clock"], int)
        assert isinstance(event["utcoffset"], float) and isinstance(event["pid"], int)
    assert received["name"] == "add" and received["args"] == "(2, 3)"
    assert received["kwargs"] == "{}" and received["retries"] == 0
    assert received["queue"] == "work"
    assert succeeded["result"] == "5" and isinstance(succeeded["runtime"], float)
    assert [e["clock"] for e in (received, started, succeeded)] == sorted(
        {e["clock"] for e in (received, started, succeeded)}
    )


async def test_task_events_travel_as_celerys_transient_json_messages() -> None:
    h = await run(task_envelope("add", 1, 1))
    # received and started in one loop turn (one task.multi list); succeeded after the
    # thread returned, alone under its own key
    assert [m.routing_key for m in h.publisher.events] == ["task.multi", "task.succeeded"]
    for message in h.publisher.events:
        assert message.envelope.delivery_mode == 1
        assert message.envelope.content_type == "application/json"
        assert message.envelope.headers == {"hostname": "rabbitq@test"}


async def test_a_failure_is_reported_once_its_dead_letter_is_confirmed() -> None:
    h = await run(task_envelope("fails", id="t2"))
    assert types(h) == ["task-received", "task-started", "task-failed"]
    failed = events_of(h)[-1]
    assert set(failed) >= EVERY_EVENT | CELERY_FIELDS["task-failed"]
    assert failed["exception"] == "ValueError('no')"
    assert "ValueError: no" in failed["traceback"]
    assert failed["reason"] == "task-failed" and failed["dead_letter_queue"] == "work.dead"


async def test_a_retry_sends_task_retried_with_its_cause() -> None:
    h = await run(task_envelope("again", id="t3"))
    assert types(h) == ["task-received", "task-started", "task-retried"]
    retried = events_of(h)[-1]
    assert retried["exception"] == "KeyError('busy')"
    assert set(retried) >= EVERY_EVENT | CELERY_FIELDS["task-retried"]


async def test_retries_exhausted_is_a_failure() -> None:
    h = await run(task_envelope("again", id="t4", retries=1))
    failed = events_of(h)[-1]
    assert failed["type"] == "task-failed" and failed["reason"] == "retries-exhausted"


async def test_an_unknown_task_is_a_failure_naming_the_task_as_celery_reports_it() -> None:
    h = await run(task_envelope("nobody", id="t5"))
    [failed] = events_of(h)
    assert failed["type"] == "task-failed" and failed["uuid"] == "t5"
    assert failed["name"] == "nobody" and failed["reason"] == "unknown-task"


async def test_an_expired_task_is_revoked_with_expired_true_as_in_celery() -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    h = await run(task_envelope("add", 1, 1, id="t6", expires=past))
    [revoked] = events_of(h)
    assert revoked["type"] == "task-revoked"
    assert set(revoked) >= EVERY_EVENT | CELERY_FIELDS["task-revoked"]
    assert revoked["expired"] is True and revoked["terminated"] is False
    assert revoked["signum"] is None


async def test_a_message_dead_lettered_on_arrival_is_rejected_without_requeue() -> None:
    bad = Envelope(
        body=b"\xff\xfe", headers={"task": "add", "id": "t7"}, content_type="application/json"
    )
    h = await run(bad, task_envelope("add", "x", id="t8", kwargs={"c": 1}))
    rejected = events_of(h)
    assert [e["type"] for e in rejected] == ["task-rejected", "task-rejected"]
    assert [e["reason"] for e in rejected] == ["undecodable", "bad-arguments"]
    for event in rejected:
        assert set(event) >= EVERY_EVENT | CELERY_FIELDS["task-rejected"]
        assert event["requeue"] is False and event["dead_letter_queue"] == "work.dead"


async def test_a_message_no_id_names_sends_no_event() -> None:
    h = await run(Envelope(body=b"[]", headers={}, content_type="application/json"))
    assert h.dead() and events_of(h) == []


async def test_a_skipped_task_is_revoked() -> None:
    class Refuse(Middleware):
        def before_process(self, context: TaskContext) -> None:
            raise SkipTask("revoked by id")

    h = await run(task_envelope("add", 1, 1, id="t9"), middleware=(Refuse(),))
    assert types(h) == ["task-received", "task-revoked"]
    assert events_of(h)[-1]["reason"] == "revoked by id"


async def test_a_full_event_buffer_drops_events_and_never_fails_the_task() -> None:
    h = harness(app_with())
    dispatcher = EventDispatcher("rabbitq@test", lambda _rk, _envelope: False)
    h.pipeline.middleware = h.pipeline.middleware.added(TaskEvents(dispatcher))
    delivery = await h.deliver(task_envelope("add", 1, 1))
    assert h.acks.acked == [delivery.tag] and h.dead() == []
    assert dispatcher.dropped == 3 and dispatcher.sent == 0


async def test_a_sink_that_raises_drops_the_event_and_never_fails_the_task() -> None:
    def broken(_rk: str, _envelope: Envelope) -> bool:
        raise RuntimeError("publisher bug")

    h = harness(app_with())
    dispatcher = EventDispatcher("rabbitq@test", broken)
    h.pipeline.middleware = h.pipeline.middleware.added(TaskEvents(dispatcher))
    delivery = await h.deliver(task_envelope("add", 1, 1))
    assert h.acks.acked == [delivery.tag]
    assert dispatcher.dropped == 3
