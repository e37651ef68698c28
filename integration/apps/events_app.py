"""Tasks whose events the events specs read (Celery's receiver, Flower, ``rabbitq events``)."""

from __future__ import annotations

import os

import rabbitq

app = rabbitq.App(
    "events",
    default_queue=os.environ.get("RABBITQ_TEST_QUEUE", "events"),
    task_send_sent_event=os.environ.get("RABBITQ_TEST_SENT_EVENTS", "1") == "1",
)


@app.task(name="ev.add")
def add(a: int, b: int) -> int:
    return a + b


@app.task(name="ev.fail")
def fail(message: str) -> None:
    raise ValueError(message)


@app.task(name="ev.retry_once", bind=True, max_retries=3)
def retry_once(self: rabbitq.Task, value: int) -> int:
    if self.request.retries == 0:
        raise self.retry(exc=RuntimeError("first attempt fails"), countdown=0.2)
    return value


@app.task(name="ev.async_add")
async def async_add(a: int, b: int) -> int:
    return a + b
