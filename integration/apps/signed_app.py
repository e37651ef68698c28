"""Tasks for the signing and incoming-limit tests: the worker's App signs with
$RABBITQ_TEST_SIGNING_KEY (also accepting $RABBITQ_TEST_OLD_SIGNING_KEY, for a rotation) and
refuses bodies over $RABBITQ_TEST_MAX_MESSAGE_SIZE. Runs are recorded as "<task id> <label>"
in $RABBITQ_TEST_RECORD."""

from __future__ import annotations

import os

import rabbitq
from integration.apps.record import append_record
from rabbitq.message_size import DEFAULT_MAX_MESSAGE_SIZE

_old_key = os.environ.get("RABBITQ_TEST_OLD_SIGNING_KEY")

app = rabbitq.App(
    "signed",
    signing_key=os.environ.get("RABBITQ_TEST_SIGNING_KEY") or None,
    signing_keys={"old": _old_key} if _old_key else None,
    max_message_size=int(os.environ.get("RABBITQ_TEST_MAX_MESSAGE_SIZE", DEFAULT_MAX_MESSAGE_SIZE)),
)


def _record(label: object) -> None:
    request = rabbitq.task.current_request.get()
    append_record(f"{request.id if request else '-'} {label}")


@app.task(name="signed.record")
def record(label: object) -> str:
    _record(label)
    return str(label)


@app.task(name="signed.retry_once", bind=True, max_retries=3)
def retry_once(self: rabbitq.Task, label: object) -> None:
    request = self.request
    assert request is not None
    _record(f"{label} attempt {request.retries + 1}")
    if request.retries == 0:
        raise self.retry(countdown=0.2)


@app.task(name="signed.add")
def add(a: int, b: int) -> int:
    return a + b


@app.task(name="signed.total")
def total(values: list[int], label: str) -> None:
    _record(f"{label} {sum(values)}")


@app.task(name="signed.grow")
def grow(size: int) -> str:
    """A result too large for the next step of its chain."""
    _record(f"grow {size}")
    return "x" * size
