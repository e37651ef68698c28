"""The remote-control and revoke tests' tasks, run by real ``rabbitq worker`` processes.

Each run appends "<task id> <label>" to $RABBITQ_TEST_RECORD; a task that hears
``rabbitq.Terminated`` appends "<task id> terminated" before letting it go on. Results go to
$RABBITQ_RESULT_BACKEND (Redis) so a test reads REVOKED from any process.
"""

from __future__ import annotations

import asyncio
import os
import time

import rabbitq
from integration.apps.record import append_record

app = rabbitq.App("control")
QUEUE = os.environ.get("CONTROL_QUEUE", "control")


def _record(label: str) -> None:
    request = record.request
    append_record(f"{request.id if request else '-'} {label}")


@app.task(name="ctl.record", queue=QUEUE)
def record(label: str) -> str:
    _record(label)
    return label


@app.task(name="ctl.retry_later", queue=QUEUE, bind=True)
def retry_later(self: rabbitq.Task, label: str, countdown: float) -> str:
    """Fails its first attempt and asks to be retried in ``countdown`` seconds."""
    _record(f"{label}-attempt-{self.request.retries}")
    if self.request.retries == 0:
        raise self.retry(countdown=countdown)
    return label


@app.task(name="ctl.spin", queue=QUEUE)
def spin(label: str, seconds: float) -> str:
    """Busy in Python (where an interrupt can land) for ``seconds``."""
    _record(f"{label}-started")
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            sum(range(200))
    except rabbitq.Terminated:
        _record("terminated")
        raise
    _record(label)
    return label


@app.task(name="ctl.wait", queue=QUEUE)
async def wait(label: str, seconds: float) -> str:
    _record(f"{label}-started")
    try:
        await asyncio.sleep(seconds)
    except rabbitq.Terminated:
        _record("terminated")
        raise
    _record(label)
    return label
