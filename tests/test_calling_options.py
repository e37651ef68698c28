"""Celery's Calling-guide options, one by one: each is taken with Celery's meaning or refused,
saying why and what to use instead (the table in docs/migrating-from-celery.md). No broker:
options are checked and turned into the message before anything is sent."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

import rabbitq
from rabbitq.message import decode_task
from rabbitq.prepare import PreparedMessage
from rabbitq.publish_options import REFUSED, parse_options
from rabbitq.publish_retry import PublishRetryPolicy


@pytest.fixture
def app() -> rabbitq.App:
    # Port 1: nothing listens, and no test here may get as far as publishing.
    return rabbitq.App("test", broker="amqp://guest:guest@127.0.0.1:1/")


def prepared(app: rabbitq.App, **options: Any) -> PreparedMessage:
    return app.prepare("t", (1,), {}, parse_options(options), app.tasks.get("t"))


def test_countdown_delays_the_message(app: rabbitq.App) -> None:
    message = prepared(app, countdown=60)
    assert message.delayed
    eta = decode_task(message.envelope).eta
    assert eta is not None and eta > dt.datetime.now(dt.UTC) + dt.timedelta(seconds=59)


def test_eta_delays_the_message_until_then(app: rabbitq.App) -> None:
    when = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    message = prepared(app, eta=when)
    assert message.delayed and decode_task(message.envelope).eta == when


def test_expires_sets_the_deadline(app: rabbitq.App) -> None:
    when = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    assert decode_task(prepared(app, expires=when).envelope).expires == when


def test_queue_routes_to_the_queue(app: rabbitq.App) -> None:
    message = prepared(app, queue="emails")
    assert (message.routing_key, message.route.queue) == ("emails", "emails")


def test_routing_key_is_the_published_key(app: rabbitq.App) -> None:
    assert prepared(app, routing_key="emails.eu").routing_key == "emails.eu"


def test_priority_is_the_message_priority(app: rabbitq.App) -> None:
    assert prepared(app, priority=7).envelope.priority == 7


def test_serializer_encodes_the_body(app: rabbitq.App) -> None:
    assert prepared(app, serializer="json").envelope.content_type == "application/json"


def test_link_and_link_error_travel_as_callbacks_and_errbacks(app: rabbitq.App) -> None:
    callback = app.task(name="cb")(lambda *a: None)
    message = decode_task(prepared(app, link=callback.s(), link_error=callback.s()).envelope)
    assert [c["task"] for c in message.callbacks or []] == ["cb"]
    assert [c["task"] for c in message.errbacks or []] == ["cb"]


def test_ignore_result_marks_the_message(app: rabbitq.App) -> None:
    app.result_backend_url = "rpc://"
    assert decode_task(prepared(app, ignore_result=True).envelope).ignore_result
    assert not decode_task(prepared(app, ignore_result=False).envelope).ignore_result


def test_headers_travel_with_the_message(app: rabbitq.App) -> None:
    assert prepared(app, headers={"tenant": "acme"}).envelope.headers["tenant"] == "acme"


def test_task_id_is_the_message_id(app: rabbitq.App) -> None:
    assert prepared(app, task_id="fixed").envelope.message_id == "fixed"


def test_time_limits_travel_in_the_message(app: rabbitq.App) -> None:
    message = decode_task(prepared(app, time_limit=30, soft_time_limit=20).envelope)
    assert message.timelimit == (20, 30)


def test_retry_and_retry_policy_are_taken(app: rabbitq.App) -> None:
    options = parse_options({"retry": True, "retry_policy": {"max_retries": 5}})
    task = app.task(name="t")(lambda x: x)
    assert app._publish_retry(options, task) == PublishRetryPolicy(max_retries=5)


def test_add_to_parent_false_is_taken(app: rabbitq.App) -> None:
    assert prepared(app, add_to_parent=False).task_id


def test_add_to_parent_true_is_refused_with_the_reason(app: rabbitq.App) -> None:
    task = app.task(name="t")(lambda x: x)
    with pytest.raises(rabbitq.ConfigurationError, match="does not record a task's children"):
        task.apply_async((1,), add_to_parent=True)


@pytest.mark.parametrize(
    ("name", "value", "instead"),
    [
        ("exchange", "celery", "use queue= or routing_key="),
        ("compression", "zlib", "pass a reference"),
        ("shadow", "other.name", r"@app.task\(name=...\)"),
        ("connection", object(), r"App\(broker=...\)"),
        ("producer", object(), r"App\(broker=...\)"),
        ("publisher", object(), r"App\(broker=...\)"),
        ("declare", [], "rabbitq topology apply"),
        ("delivery_mode", 1, "every task message is persistent"),
        ("mandatory", False, "every publish is mandatory"),
        ("immediate", True, "use expires="),
        ("router", object(), "pass queue= or routing_key="),
        ("chord", object(), r"rabbitq.chord\(header, body\)"),
        ("chain", [], r"rabbitq.chain\(...\)"),
    ],
)
def test_refused_celery_option_says_why_and_what_instead(
    app: rabbitq.App, name: str, value: Any, instead: str
) -> None:
    task = app.task(name="t")(lambda x: x)
    with pytest.raises(rabbitq.ConfigurationError, match=f"option '{name}' is not supported"):
        task.apply_async((1,), **{name: value})
    with pytest.raises(rabbitq.ConfigurationError, match=instead):
        task.apply_async((1,), **{name: value})


def test_every_refused_option_is_in_the_test_above() -> None:
    tested = {
        "exchange", "compression", "shadow", "connection", "producer", "publisher", "declare",
        "delivery_mode", "mandatory", "immediate", "router", "chord", "chain",
    }  # fmt: skip
    assert set(REFUSED) == tested


def test_a_misspelt_option_is_still_a_type_error_listing_the_names(app: rabbitq.App) -> None:
    task = app.task(name="t")(lambda x: x)
    with pytest.raises(TypeError, match=r"unknown apply_async option.*retry_polcy.*countdown"):
        task.apply_async((1,), retry_polcy={})
