"""The tasks of Celery's "Calling Tasks" and "Canvas: Designing Work-flows" guides, under the
guides' own names (``add``, ``mul``, ``tsum``...), for ``integration/test_celery_guides.py``.

The names are made by ``@app.task`` (``integration.apps.guides_app.add``), as in the guides.
The queue and the result backend come from $RABBITQ_TEST_QUEUE and $RABBITQ_RESULT_BACKEND so
the test and its worker agree.
"""

from __future__ import annotations

import os
from typing import Any

import rabbitq
from integration.apps.record import append_record

app = rabbitq.App("guides", default_queue=os.environ.get("RABBITQ_TEST_QUEUE", "guides"))


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def mul(x: int, y: int) -> int:
    return x * y


@app.task
def subtract(x: int, y: int) -> int:
    return x - y


@app.task
def tsum(numbers: list[int]) -> int:
    return sum(numbers)


@app.task
def fail() -> None:
    raise ValueError("the guide's failing task")


@app.task(bind=True)
def log_error(self: rabbitq.Task, task_id: str) -> None:
    """An errback, called the old way: with the failed task's id; the error in the request."""
    error = self.request.error if self.request else None
    append_record(f"error {task_id} {error.exc_type if error else '-'}")


@app.task
def log_result(value: Any) -> None:
    append_record(f"result {value}")


@app.task
def reset_buffers(*_ignored: Any) -> str:
    append_record("reset")
    return "reset"


@app.task
def create_user(username: str, first: str, last: str, email: str) -> str:
    append_record(f"created {username} {first} {last} {email}")
    return username


@app.task
def import_contacts(username: str) -> str:
    return f"contacts of {username}"


@app.task
def send_welcome_email(username: str) -> str:
    return f"welcome {username}"


@app.task(queue="emails")  # a test points it at a queue of its own
def send_email(to: str) -> str:
    return f"sent to {to}"
