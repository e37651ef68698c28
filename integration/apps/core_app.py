"""Tasks the integration tests run in real worker processes.

Each run appends "<task id> <label>" to the file named by $RABBITQ_TEST_RECORD (O_APPEND
writes of one short line are atomic, so several worker processes can share the file).
"""

from __future__ import annotations

import asyncio
import os
import time

import rabbitq
from integration.apps.record import append_record

app = rabbitq.App(
    "integration", redelivery_limit=int(os.environ.get("RABBITQ_TEST_REDELIVERY_LIMIT", "5"))
)


def _record(label: object) -> None:
    request = record.request  # the contextvar of whichever task is running
    append_record(f"{request.id if request else '-'} {label}")


@app.task(name="it.record")
def record(label: object) -> None:
    _record(label)


@app.task(name="it.async_record")
async def async_record(label: object) -> None:
    await asyncio.sleep(0)
    _record(label)


@app.task(name="it.slow_record")
def slow_record(label: object, seconds: float) -> None:
    time.sleep(seconds)
    _record(label)


@app.task(name="it.fail")
def fail(message: str) -> None:
    raise ValueError(message)


@app.task(name="it.crash")
def crash() -> None:
    # Simulates a task that kills its worker process (segfault, OOM kill).
    os._exit(3)


@app.task(name="it.two_args")
def two_args(a: int, b: int) -> None:
    _record(a + b)


@app.task(name="it.on_time")
async def on_time(label: object) -> None:
    """Records when it started and when it was due: "<label> <start> <eta>" (epoch seconds)."""
    request = on_time.request
    assert request is not None and request.eta is not None
    _record(f"{label} {time.time():.6f} {request.eta.timestamp():.6f}")


@app.task(name="it.flaky", bind=True, max_retries=5)
def flaky(self: rabbitq.Task, label: object, failures: int, countdown: float) -> None:
    """Fails its first ``failures`` attempts (asking for a retry), then succeeds."""
    request = self.request
    assert request is not None
    _record(f"{label} attempt {request.retries + 1}")
    if request.retries < failures:
        raise self.retry(exc=ConnectionError("flaky"), countdown=countdown)


@app.task(
    name="it.hopeless",
    autoretry_for=(ValueError,),
    max_retries=3,
    retry_backoff=0.1,
    retry_jitter=False,
)
def hopeless(label: object) -> None:
    _record(f"{label} attempt")
    raise ValueError(f"hopeless {label}")


@app.task(name="it.needs_file")
def needs_file(label: object, path: str) -> None:
    """Fails until ``path`` exists: a task whose cause of failure an operator can fix."""
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    _record(label)
