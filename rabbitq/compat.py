"""Living next to Celery: the queue and route a Celery app should use to share a queue with
rabbitq, and Celery settings translated into rabbitq's App options and routing YAML.

Celery is never imported at module level: rabbitq does not depend on it. ``celery_queue``
imports kombu (Celery's own dependency) when called, from inside the Celery app's config.

    # celeryconfig.py of the Celery app, while queue "emails" moves to rabbitq
    from rabbitq.compat import celery_queue, celery_route
    task_queues = [celery_queue("emails")]          # a Celery worker may still consume it
    task_routes = {"shop.emails.*": celery_route("emails")}
    accept_content = ["json", "msgpack"]            # rabbitq sends msgpack unless told json
"""

from __future__ import annotations

import datetime as dt
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from rabbitq.errors import ConfigurationError
from rabbitq.topology import TASK_EXCHANGE, Topology


def celery_route(routing_key: str) -> dict[str, str]:
    """A ``task_routes`` value that sends Celery's messages to rabbitq's topic exchange.

    No queue is named, so Celery declares nothing: the queue keeps the arguments rabbitq (or
    ``rabbitq topology apply``) gave it. Celery does not publish with ``mandatory``, so point
    a route here only once the queue exists, or its messages are dropped unseen.
    """
    return {"exchange": TASK_EXCHANGE, "exchange_type": "topic", "routing_key": routing_key}


def celery_queue(name: str, topology: Topology | None = None) -> Any:
    """The ``kombu.Queue`` for a Celery worker that consumes a queue rabbitq also uses: bound
    to the ``rabbitq`` exchange with rabbitq's bindings, and declared with rabbitq's
    arguments (dead-letter queue, type, limits), so whichever side declares it first, the
    other agrees instead of failing with PRECONDITION_FAILED."""
    # Celery's dependency, present wherever this is called; untyped, hence Any.
    kombu: Any = importlib.import_module("kombu")
    spec = (topology or Topology()).queue(name)
    exchange = kombu.Exchange(TASK_EXCHANGE, type="topic", durable=True)
    return kombu.Queue(
        name,
        bindings=[kombu.binding(exchange, routing_key=key) for key in spec.effective_bindings()],
        durable=True,
        queue_arguments=spec.arguments(),
    )


# -- settings -----------------------------------------------------------------------------------

# Celery settings with an App option of the same meaning: Celery name -> App keyword.
APP_OPTIONS = {
    "broker_url": "broker",
    "broker_use_ssl": "broker_use_ssl",
    "result_backend": "result_backend",
    "task_serializer": "serializer",
    "result_serializer": "result_serializer",
    "result_expires": "result_expires",
    "task_default_queue": "default_queue",
    "task_ignore_result": "ignore_result",
    "task_track_started": "track_started",
    "task_time_limit": "task_time_limit",
    "task_publish_retry": "task_publish_retry",
    "task_publish_retry_policy": "task_publish_retry_policy",
    "task_soft_time_limit": "task_soft_time_limit",
    "worker_send_task_events": "worker_send_task_events",
    "task_send_sent_event": "task_send_sent_event",
}

# Celery settings that are rabbitq's behaviour already, or belong elsewhere: why.
NOTES = {
    "task_acks_late": "rabbitq always acks after the task finishes (acks_late=True); "
    "early acks are not offered",
    "task_reject_on_worker_lost": "always: a worker that dies leaves its tasks unacked, and "
    "the broker redelivers them (up to App(redelivery_limit=5) times, then <queue>.dead)",
    "accept_content": "workers accept json and msgpack, never pickle or yaml",
    "worker_concurrency": "rabbitq worker -c N",
    "worker_prefetch_multiplier": "rabbitq worker --prefetch N (per queue and process; "
    "default 4 x concurrency)",
    "worker_max_tasks_per_child": "rabbitq worker --max-tasks-per-child N",
    "worker_max_memory_per_child": "rabbitq worker --max-memory-per-child KIB",
    "task_default_rate_limit": "no app-wide default: set @app.task(rate_limit=...) per task",
    "timezone": "rabbitq keeps times in UTC; cron entries take timezone= per entry",
    "enable_utc": "always UTC",
    "beat_schedule": "app.add_periodic(...) or a schedule YAML file (docs/beat.md)",
    "task_queues": "translated into the routing file's queues (type, bindings)",
    "task_routes": "translated into the routing file's tasks",
    "task_default_queue_type": "translated into the routing file's default_queue_type",
    "broker_connection_retry_on_startup": "publishers and workers always retry connecting",
    "redis_backend_use_ssl": "give the TLS settings in the result backend's URL instead: "
    "rediss://host:6380/0?ssl_ca_certs=/path/ca.pem (docs/security.md)",
}

# Celery settings that mean a different way of working here: set (truthy), they are refused
# with what to do instead, so a test suite never believes it runs eagerly when it does not.
REFUSED = {
    "task_always_eager": "an app setting would make production code eager too; in tests use "
    "`with rabbitq.testing.eager(app):` or rabbitq.testing.make_eager(app) once for the run "
    "(or the rabbitq_eager fixture): docs/testing.md",
    "task_eager_propagates": "eager mode (rabbitq.testing.eager) always raises a failure at "
    "result.get(), as a worker's would: docs/testing.md",
}

UNSAFE_SERIALIZERS = ("pickle", "yaml")


@dataclass
class CelerySettings:
    """Celery settings, translated: ``App(**app_options)``, a routing file, and notes."""

    app_options: dict[str, Any] = field(default_factory=dict)
    routing: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def routing_yaml(self) -> str:
        return yaml.safe_dump(self.routing, sort_keys=False) if self.routing else ""


def from_celery_settings(conf: Mapping[str, Any]) -> CelerySettings:
    """Translate a Celery configuration (``celery_app.conf``, or a plain dict of its
    lowercase settings). Settings left at Celery's defaults may be passed or not."""
    translated = CelerySettings()
    for name, value in conf.items():
        if value is None:
            continue
        if name in REFUSED and value:
            raise ConfigurationError(f"{name}={value!r}: {REFUSED[name]}")
        if name in APP_OPTIONS:
            translated.app_options[APP_OPTIONS[name]] = _app_value(name, value)
        elif name in NOTES and not (isinstance(value, dict | list | tuple) and not value):
            translated.notes.append(f"{name}: {NOTES[name]}")
    routes = _task_routes(conf.get("task_routes"))
    queues = _task_queues(conf.get("task_queues"))
    if conf.get("task_default_queue_type") == "quorum":
        translated.routing["default_queue_type"] = "quorum"
    if queues:
        translated.routing["queues"] = queues
    if routes:
        translated.routing["tasks"] = routes
    return translated


def _app_value(name: str, value: Any) -> Any:
    if name in ("task_serializer", "result_serializer") and value in UNSAFE_SERIALIZERS:
        raise ConfigurationError(
            f"{name}={value!r}: rabbitq never loads {value} (it runs code from the message); "
            "switch the Celery side to json or msgpack first"
        )
    if name == "result_backend" and not str(value).startswith(("rpc://", "redis://", "rediss://")):
        raise ConfigurationError(
            f"result_backend={value!r}: rabbitq has the rpc:// and redis:// backends only"
        )
    if name == "result_expires" and isinstance(value, dt.timedelta):
        return value.total_seconds()
    return value


def _task_routes(routes: Any) -> dict[str, str]:
    """Celery's ``task_routes`` (a dict, or a list of dicts; router functions cannot be
    translated) as the routing file's ``tasks`` map: pattern -> routing key."""
    if not routes:
        return {}
    tables = routes if isinstance(routes, list | tuple) else [routes]
    translated: dict[str, str] = {}
    for table in tables:
        if not isinstance(table, Mapping):
            raise ConfigurationError(
                f"task_routes entry {table!r} is a router function or class; rabbitq routes "
                "with glob patterns only: write its rules in the routing file's tasks map"
            )
        for pattern, route in table.items():
            translated.setdefault(str(pattern), _routing_key(pattern, route))
    return translated


def _routing_key(pattern: str, route: Any) -> str:
    if isinstance(route, str):
        return route
    if isinstance(route, Mapping):
        key = route.get("routing_key") or route.get("queue")
        queue_name = getattr(key, "name", key)  # a kombu Queue, or its name
        if queue_name:
            return str(queue_name)
    raise ConfigurationError(f"task_routes[{pattern!r}] = {route!r} names no queue or key")


def _task_queues(queues: Any) -> dict[str, dict[str, Any]]:
    """kombu Queues (or anything with .name, .routing_key, .queue_arguments) as the routing
    file's queues. Their exchange is replaced by rabbitq's topic exchange."""
    translated: dict[str, dict[str, Any]] = {}
    for queue in queues or ():
        name = getattr(queue, "name", None)
        if not name:
            continue
        spec: dict[str, Any] = {}
        arguments = getattr(queue, "queue_arguments", None) or {}
        if arguments.get("x-queue-type") == "quorum":
            spec["type"] = "quorum"
        if (routing_key := getattr(queue, "routing_key", None)) and routing_key != name:
            spec["bindings"] = [routing_key]
        for argument, key in (("x-max-length", "max_length"), ("x-message-ttl", "message_ttl"),
                              ("x-max-priority", "max_priority")):  # fmt: skip
            if argument in arguments:
                spec[key] = arguments[argument]
        if (max_priority := getattr(queue, "max_priority", None)) is not None:
            spec["max_priority"] = max_priority
        translated[name] = spec
    return translated
