"""The Celery side of the interop tests: a real Celery 5 app, as producer (in the test process)
and as worker (``celery worker -P solo`` in a subprocess).

It is configured the way docs/migrating-from-celery.md says: rabbitq.compat's queue and route,
msgpack accepted. Its results are read back as JSON only (Celery's default), so a test that
reads one proves the rabbitq worker answered in the caller's serializer.
"""

from __future__ import annotations

import json
import os

from celery import Celery
from kombu import Queue

from integration.apps.record import append_record
from rabbitq.compat import celery_queue, celery_route

QUEUE = os.environ.get("INTEROP_QUEUE", "interop")


def make_app(queue: str, backend: str | None, *, before_migration: bool = False) -> Celery:
    """A Celery app routing the interop tasks to ``queue`` on rabbitq's exchange, or
    (``before_migration``) to a queue declared Celery's own way, as in an existing project."""
    celery_app = Celery(
        "interop-celery",
        broker=os.environ.get("RABBITQ_BROKER_URL", "amqp://guest:guest@localhost:5672//"),
        backend=backend or None,
        set_as_current=False,
    )
    celery_app.conf.update(
        accept_content=["json", "msgpack"],
        result_accept_content=["json"],
        task_queues=[Queue(queue) if before_migration else celery_queue(queue)],
        task_routes={"interop.*": {"queue": queue} if before_migration else celery_route(queue)},
        task_default_queue=queue,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    return celery_app


# The worker's app (``celery -A integration.apps.interop_celery worker``).
app = make_app(
    QUEUE,
    os.environ.get("CELERY_RESULT_BACKEND"),
    before_migration=os.environ.get("INTEROP_BEFORE_MIGRATION") == "1",
)


def _record(task_id: str | None, label: str) -> None:
    append_record(f"{task_id or '-'} {label}")


@app.task(name="interop.add", bind=True)
def add(self, a, b):  # type: ignore[no-untyped-def]
    _record(self.request.id, f"celery add {a} {b}")
    return a + b


@app.task(name="interop.echo", bind=True)
def echo(self, *args, **kwargs):  # type: ignore[no-untyped-def]
    seen = {"args": list(args), "kwargs": kwargs, "retries": self.request.retries}
    _record(self.request.id, "celery echo " + json.dumps(seen, sort_keys=True))
    return {"args": list(args), "kwargs": kwargs}


@app.task(name="interop.when", bind=True)
def when(self, label):  # type: ignore[no-untyped-def]
    import time

    _record(self.request.id, f"{label} {time.time():.6f} {self.request.eta or '-'}")


@app.task(name="interop.fail", bind=True)
def fail(self, message):  # type: ignore[no-untyped-def]
    raise ValueError(message)
