"""The rabbitq side of the Celery interop tests: tasks a rabbitq worker runs for Celery callers.

Each run appends "<task id> <label>" to $RABBITQ_TEST_RECORD; the queue is $INTEROP_QUEUE.
"""

from __future__ import annotations

import json
import os
import time

import rabbitq

QUEUE = os.environ.get("INTEROP_QUEUE", "interop")
app = rabbitq.App("interop-rabbitq", default_queue=QUEUE)


def _record(task: rabbitq.Task, label: str) -> None:
    request = task.request
    line = f"{request.id if request else '-'} {label}\n".encode()
    fd = os.open(os.environ["RABBITQ_TEST_RECORD"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


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
