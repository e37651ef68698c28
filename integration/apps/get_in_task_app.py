"""Tasks that wait for another task's result from inside a task (Celery's forbidden call).

The queue and the result backend come from $RABBITQ_TEST_QUEUE and $RABBITQ_RESULT_BACKEND,
so the test and its worker agree on them.
"""

from __future__ import annotations

import os

import rabbitq

app = rabbitq.App("get-in-task", default_queue=os.environ.get("RABBITQ_TEST_QUEUE", "git"))


@app.task(name="git.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="git.waits")
def waits() -> int:
    result: int = add.delay(1, 2).get(timeout=20)
    return result


@app.task(name="git.awaits_blocking")
async def awaits_blocking() -> int:
    # A blocking get() in an async task would freeze the worker's whole event loop.
    result: int = add.delay(1, 2).get(timeout=20)
    return result


@app.task(name="git.waits_opted_out")
def waits_opted_out() -> int:
    result: int = add.delay(1, 2).get(timeout=60, disable_sync_subtasks=False)
    return result
