"""The rabbitq side of the Celery interop tests: tasks a rabbitq worker runs for Celery callers.

Each run appends "<task id> <label>" to $RABBITQ_TEST_RECORD; the queue is $INTEROP_QUEUE.
"""

from __future__ import annotations

import json
import os
import time

import rabbitq
from integration.apps.record import append_record

QUEUE = os.environ.get("INTEROP_QUEUE", "interop")
app = rabbitq.App("interop-rabbitq", default_queue=QUEUE)


def _record(task: rabbitq.Task, label: str) -> None:
    request = task.request
    append_record(f"{request.id if request else '-'} {label}")


@app.task(name="interop.add")
def add(a: int, b: int) -> int:
    _record(add, f"rabbitq add {a} {b}")
    return a + b


@app.task(name="interop.echo")
def echo(*args: object, **kwargs: object) -> dict[str, object]:
    request = echo.request
    assert request is not None
    seen = {"args": list(args), "kwargs": kwargs, "retries": request.retries}
    _record(echo, "rabbitq echo " + json.dumps(seen, sort_keys=True))
    return {"args": list(args), "kwargs": kwargs}


@app.task(name="interop.when")
def when(label: str) -> None:
    """Records when it started and when it was due: "<label> <start> <eta>" (epoch seconds)."""
    request = when.request
    assert request is not None
    eta = request.eta.timestamp() if request.eta else 0.0
    _record(when, f"{label} {time.time():.6f} {eta:.6f}")


@app.task(name="interop.fail")
def fail(message: str) -> None:
    raise ValueError(message)


@app.task(name="interop.errback")
def errback(failed_id: str) -> None:
    request = errback.request
    error = request.error if request is not None else None
    _record(errback, f"rabbitq errback {failed_id} {error.exc_type if error else '-'}")
