"""App configuration, task registration and routing precedence (no broker needed)."""

from __future__ import annotations

import datetime as dt
import re

import pytest

import rabbitq
from rabbitq.message import decode_task
from rabbitq.publish_options import PublishOptions
from rabbitq.topology import TaskRoute, Topology


@pytest.fixture
def app() -> rabbitq.App:
    return rabbitq.App("test", broker="amqp://guest:guest@127.0.0.1:1/")


def test_broker_url_defaults_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RABBITQ_BROKER_URL", "amqp://u:p@example:5672/v")
    assert rabbitq.App().broker_url == "amqp://u:p@example:5672/v"


def test_task_is_named_after_module_and_function(app: rabbitq.App) -> None:
    @app.task
    def send(x: int) -> int:
        return x

    assert send.name == f"{__name__}.test_task_is_named_after_module_and_function.<locals>.send"
    assert send(3) == 3


def test_task_without_options_routes_to_the_default_queue(app: rabbitq.App) -> None:
    task = app.task(lambda: None, name="t")  # type: ignore[call-overload]
    route = app.route("t", PublishOptions(), task)
    assert (route.routing_key, route.queue) == ("default", "default")


def test_task_queue_is_its_routing_key(app: rabbitq.App) -> None:
    task = app.task(name="t", queue="reports")(lambda: None)
    assert app.route("t", PublishOptions(), task).routing_key == "reports"


def test_explicit_routing_key_wins_over_everything(app: rabbitq.App) -> None:
    app.topology = Topology(task_routes=(TaskRoute("t", "from.file"),))
    task = app.task(name="t", routing_key="from.code")(lambda: None)
    assert app.route("t", PublishOptions(routing_key="explicit"), task).routing_key == "explicit"


def test_routing_file_overrides_the_decorator(app: rabbitq.App) -> None:
    app.topology = Topology(task_routes=(TaskRoute("t", "from.file"),))
    task = app.task(name="t", routing_key="from.code")(lambda: None)
    assert app.route("t", PublishOptions(), task).routing_key == "from.file"


def test_wildcard_routing_key_is_rejected_before_publishing(app: rabbitq.App) -> None:
    with pytest.raises(rabbitq.ConfigurationError, match="routing key"):
        app.prepare("t", (), {}, PublishOptions(routing_key="emails.#"))


def test_unknown_apply_async_option_is_a_type_error(app: rabbitq.App) -> None:
    task = app.task(name="t")(lambda: None)
    with pytest.raises(TypeError, match="contdown"):
        task.apply_async(contdown=5)


def test_naive_expires_is_rejected(app: rabbitq.App) -> None:
    with pytest.raises(rabbitq.ConfigurationError, match="timezone-aware"):
        app.prepare("t", (), {}, PublishOptions(expires=dt.datetime(2030, 1, 1)))


def test_expires_in_seconds_becomes_an_absolute_time(app: rabbitq.App) -> None:
    prepared = app.prepare("t", (), {}, PublishOptions(expires=60))
    expires = decode_task(prepared.envelope).expires
    assert expires is not None and expires > dt.datetime.now(dt.UTC)


def test_unserializable_argument_fails_at_the_caller(app: rabbitq.App) -> None:
    with pytest.raises(rabbitq.ConfigurationError, match="cannot serialize"):
        app.prepare("t", (object(),), {}, PublishOptions())


def test_given_task_id_is_used(app: rabbitq.App) -> None:
    prepared = app.prepare("t", (), {}, PublishOptions(task_id="fixed"))
    assert prepared.task_id == "fixed" and prepared.envelope.message_id == "fixed"


def test_two_different_functions_cannot_share_a_name(app: rabbitq.App) -> None:
    app.task(name="same")(lambda: 1)
    with pytest.raises(rabbitq.ConfigurationError, match="already named"):
        app.task(name="same")(lambda: 2)


def test_bound_task_checks_arguments_without_self(app: rabbitq.App) -> None:
    @app.task(bind=True, name="b")
    def bound(self: object, x: int) -> int:
        return x

    bound.check_arguments([1], {})
    with pytest.raises(TypeError):
        bound.check_arguments([1, 2], {})


def test_load_app_finds_the_single_app_in_a_module() -> None:
    from rabbitq.app_path import load_app

    module_app = load_app("tests.sample_app")
    assert module_app.name == "sample"


def test_load_app_with_a_bad_module_is_a_configuration_error() -> None:
    from rabbitq.app_path import load_app

    with pytest.raises(rabbitq.ConfigurationError, match="cannot import"):
        load_app("no.such.module")


@pytest.mark.parametrize(
    ("option", "why"),
    [
        ("acks_late", "always acks after the task"),
        ("track_started", "App(track_started=True)"),
        ("quueue", "no such task option"),
    ],
)
def test_a_celery_task_option_rabbitq_does_not_build_is_refused_saying_why(
    option: str, why: str
) -> None:
    app = rabbitq.App("refusals")
    with pytest.raises(rabbitq.ConfigurationError, match=re.escape(why)):
        app.task(**{option: True})(lambda: None)
    assert app.tasks == {} or all(not name.endswith("<lambda>") for name in app.tasks)
