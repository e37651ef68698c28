"""Tasks and middleware for the fault-injection tests: one failure point each.

Runs are recorded as "<task id> <label>" in $RABBITQ_TEST_RECORD; the middleware and Celery
signal receivers record "<task id> hook:<name>" so a test can see the seam fire in a real
worker process.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import rabbitq
from integration.apps.record import append_record
from rabbitq import signals


class FailsOnLabel(rabbitq.Middleware):
    """Raises in ``before_process`` for tasks whose first argument is "middleware-fails"."""

    def before_process(self, context: rabbitq.TaskContext) -> None:
        args = context.request.args
        if args and args[0] == "middleware-fails":
            raise RuntimeError("before_process failed")

    def after_process(self, context: rabbitq.TaskContext, outcome: rabbitq.Outcome) -> None:
        append_record(f"{context.request.id} hook:after_process")

    def process_start(self, app: rabbitq.App) -> None:
        if os.environ.get("RABBITQ_TEST_FAIL_PROCESS_START"):
            raise RuntimeError("process_start refused")


app = rabbitq.App(
    "faults",
    middleware=[FailsOnLabel()],
    redelivery_limit=int(os.environ.get("RABBITQ_TEST_REDELIVERY_LIMIT", "5")),
    followup_retry_for=float(os.environ.get("RABBITQ_TEST_FOLLOWUP_RETRY_FOR", "300")),
)


@signals.task_prerun.connect
def _prerun(task_id: str | None = None, **_: Any) -> None:
    append_record(f"{task_id} hook:task_prerun")


@signals.worker_ready.connect
def _ready(**_: Any) -> None:
    append_record("- hook:worker_ready")


@signals.worker_shutdown.connect
def _shutdown(**_: Any) -> None:
    append_record("- hook:worker_shutdown")


def _record(label: object) -> None:
    request = rabbitq.task.current_request.get()
    append_record(f"{request.id if request else '-'} {label}")


@app.task(name="faults.ok")
def ok(label: object) -> str:
    _record(label)
    return f"done {label}"


@app.task(name="faults.fails")
def fails(label: object) -> None:
    _record(label)
    raise ValueError(f"failed {label}")


@app.task(name="faults.exits")
def exits(label: object) -> None:
    _record(label)
    sys.exit(3)


@app.task(name="faults.interrupts")
async def interrupts(label: object) -> None:
    _record(label)
    await asyncio.sleep(0)
    raise KeyboardInterrupt


@app.task(name="faults.retry_once", bind=True, max_retries=3)
def retry_once(self: rabbitq.Task, label: object) -> None:
    request = self.request
    assert request is not None
    _record(f"{label} attempt {request.retries + 1}")
    if request.retries == 0:
        raise self.retry(countdown=0.2)


@app.task(name="faults.always_retry", bind=True, max_retries=1)
def always_retry(self: rabbitq.Task, label: object) -> None:
    _record(label)
    raise self.retry(countdown=0.1)


@app.task(name="faults.unencodable")
def unencodable(label: object) -> object:
    _record(label)
    return object()


@app.task(name="faults.slow")
def slow(label: object, seconds: float) -> None:
    import time

    time.sleep(seconds)
    _record(label)
