"""Celery settings translate into App options and a routing file; the queue and route a Celery
app should use agree with what rabbitq declares."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

import rabbitq
from rabbitq.compat import celery_queue, celery_route, from_celery_settings
from rabbitq.errors import ConfigurationError
from rabbitq.routing import parse_routing
from rabbitq.topology import Topology


def test_settings_with_an_app_option_translate_one_to_one() -> None:
    translated = from_celery_settings(
        {
            "broker_url": "amqp://u:p@rabbit:5672/shop",
            "result_backend": "redis://cache:6379/1",
            "task_serializer": "json",
            "result_serializer": "json",
            "result_expires": dt.timedelta(hours=2),
            "task_default_queue": "work",
            "task_ignore_result": True,
            "task_track_started": True,
        }
    )
    assert translated.app_options == {
        "broker": "amqp://u:p@rabbit:5672/shop",
        "result_backend": "redis://cache:6379/1",
        "serializer": "json",
        "result_serializer": "json",
        "result_expires": 7200.0,
        "default_queue": "work",
        "ignore_result": True,
        "track_started": True,
    }
    app = rabbitq.App("translated", **translated.app_options)
    assert app.default_queue == "work" and app.result_expires == 7200.0


def test_celery_s_broker_use_ssl_becomes_the_app_s_tls_settings() -> None:
    translated = from_celery_settings(
        {"broker_url": "amqp://u:p@rabbit/", "broker_use_ssl": {"ca_certs": "/etc/ca.pem"}}
    )
    assert translated.app_options["broker_use_ssl"] == {"ca_certs": "/etc/ca.pem"}
    app = rabbitq.App("translated", **translated.app_options)
    assert app.broker_url.startswith("amqps://") and "ca_certs=" in app.broker_url


def test_celery_time_limits_become_app_wide_task_time_limits() -> None:
    translated = from_celery_settings({"task_time_limit": 300, "task_soft_time_limit": 240})
    app = rabbitq.App("translated", **translated.app_options)
    task = app.task(name="report")(lambda: None)
    assert (task.soft_time_limit, task.time_limit) == (240, 300)


def test_celery_publish_retry_settings_become_app_options() -> None:
    translated = from_celery_settings(
        {"task_publish_retry": False, "task_publish_retry_policy": {"max_retries": 5}}
    )
    assert translated.app_options == {
        "task_publish_retry": False,
        "task_publish_retry_policy": {"max_retries": 5},
    }
    rabbitq.App("translated", **translated.app_options)


def test_celery_recycling_settings_name_the_worker_options() -> None:
    notes = from_celery_settings(
        {"worker_max_tasks_per_child": 100, "worker_max_memory_per_child": 200_000}
    ).notes
    assert "worker_max_tasks_per_child: rabbitq worker --max-tasks-per-child N" in notes
    assert "worker_max_memory_per_child: rabbitq worker --max-memory-per-child KIB" in notes


def test_task_routes_become_the_routing_file_tasks_map() -> None:
    translated = from_celery_settings(
        {
            "task_routes": [
                {"shop.emails.*": {"queue": "emails"}, "shop.reports.build": "reports"},
                {"shop.*": {"exchange": "rabbitq", "routing_key": "shop.misc"}},
            ]
        }
    )
    assert translated.routing["tasks"] == {
        "shop.emails.*": "emails",
        "shop.reports.build": "reports",
        "shop.*": "shop.misc",
    }
    topology = parse_routing(translated.routing_yaml, "translated.yaml")
    assert [route.routing_key for route in topology.task_routes] == [
        "emails",
        "reports",
        "shop.misc",
    ]


def test_task_queues_become_routing_file_queues() -> None:
    queues = [
        SimpleNamespace(name="emails", routing_key="emails", queue_arguments=None),
        SimpleNamespace(
            name="reports", routing_key="reports.#", queue_arguments={"x-queue-type": "quorum"}
        ),
    ]
    translated = from_celery_settings({"task_queues": queues, "task_default_queue_type": "quorum"})
    assert translated.routing == {
        "default_queue_type": "quorum",
        "queues": {"emails": {}, "reports": {"type": "quorum", "bindings": ["reports.#"]}},
    }
    parse_routing(translated.routing_yaml, "translated.yaml")  # valid as a routing file


def test_settings_rabbitq_has_as_behaviour_are_explained() -> None:
    notes = from_celery_settings({"task_acks_late": False, "worker_concurrency": 4}).notes
    assert any(note.startswith("task_acks_late: rabbitq always acks after") for note in notes)
    assert "worker_concurrency: rabbitq worker -c N" in notes


def test_pickle_is_refused_with_the_way_out() -> None:
    with pytest.raises(ConfigurationError, match="switch the Celery side to json or msgpack"):
        from_celery_settings({"task_serializer": "pickle"})


def test_celery_s_always_eager_is_refused_pointing_at_rabbitq_testing_eager() -> None:
    with pytest.raises(ConfigurationError, match=r"rabbitq\.testing\.eager\(app\)"):
        from_celery_settings({"task_always_eager": True})


def test_always_eager_left_off_is_no_error() -> None:
    assert from_celery_settings({"task_always_eager": False}).app_options == {}


def test_an_unsupported_result_backend_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="rpc:// and redis:// backends only"):
        from_celery_settings({"result_backend": "db+postgresql://db/results"})


def test_a_router_function_cannot_be_translated() -> None:
    with pytest.raises(ConfigurationError, match="router function"):
        from_celery_settings({"task_routes": [lambda *a, **k: None]})


def test_celery_route_points_at_the_rabbitq_topic_exchange_without_a_queue() -> None:
    assert celery_route("emails") == {
        "exchange": "rabbitq",
        "exchange_type": "topic",
        "routing_key": "emails",
    }


def test_celery_queue_is_declared_exactly_as_rabbitq_declares_it() -> None:
    queue = celery_queue("emails")
    spec = Topology().queue("emails")
    assert queue.queue_arguments == spec.arguments()
    assert queue.durable
    assert sorted(b.routing_key for b in queue.bindings) == sorted(spec.effective_bindings())
    assert {b.exchange.name for b in queue.bindings} == {"rabbitq"}
    assert {b.exchange.type for b in queue.bindings} == {"topic"}


def test_celerys_event_settings_become_the_apps() -> None:
    translated = from_celery_settings(
        {"worker_send_task_events": True, "task_send_sent_event": True}
    )
    app = rabbitq.App("translated", **translated.app_options)
    assert app.worker_send_task_events and app.task_send_sent_event
