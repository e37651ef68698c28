"""Tasks for the results and canvas tests. The result backend comes from
$RABBITQ_RESULT_BACKEND (rpc://, redis://...), so test and worker agree on it."""

from __future__ import annotations

import os
import time
from typing import Any

import rabbitq
from integration.apps.record import append_record

app = rabbitq.App(
    "canvas",
    default_queue=os.environ.get("RABBITQ_TEST_QUEUE", "canvas"),
    chord_fold_after=float(os.environ.get("RABBITQ_TEST_FOLD_AFTER", "600")),
    chord_fold_parts=int(os.environ.get("RABBITQ_TEST_FOLD_PARTS", "1000")),
)


def _record(label: object) -> None:
    append_record(str(label))


@app.task(name="cv.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="cv.mul")
def mul(x: int, y: int) -> int:
    return x * y


@app.task(name="cv.inc")
def inc(x: int) -> int:
    return x + 1


@app.task(name="cv.echo")
def echo(value: Any) -> Any:
    return value


@app.task(name="cv.noop", ignore_result=True)
def noop(*_args: Any) -> None:
    return None


@app.task(name="cv.tsum")
def tsum(values: list[int]) -> int:
    return sum(values)


@app.task(name="cv.collect")
def collect(values: list[Any], label: str) -> int:
    """A chord body that records what it received: "<label> <count> <values...>"."""
    _record(f"{label} {len(values)} {' '.join(str(v) for v in values)}")
    return len(values)


@app.task(name="cv.fail")
def fail(message: str) -> None:
    raise ValueError(message)


@app.task(name="cv.fail_if")
def fail_if(x: int, bad: int) -> int:
    if x == bad:
        raise KeyError(f"member {x} is bad")
    return x


@app.task(name="cv.errback", bind=True)
def errback(self: rabbitq.Task, failed_id: str, label: str) -> None:
    error = self.request.error if self.request else None
    _record(
        f"{label} {failed_id} {error.exc_type if error else '-'} "
        f"{error.exc_message if error else '-'}"
    )


@app.task(name="cv.sleep_then")
def sleep_then(x: int, seconds: float) -> int:
    time.sleep(seconds)
    return x


@app.task(name="cv.flaky", bind=True, max_retries=5)
def flaky(self: rabbitq.Task, x: int, failures: int) -> int:
    request = self.request
    assert request is not None
    if request.retries < failures:
        raise self.retry(exc=ConnectionError("flaky"), countdown=0.2)
    return x * 10


@app.task(name="cv.unserializable")
def unserializable() -> object:
    return object()


@app.task(name="cv.record_member")
def record_member(x: int, label: str) -> int:
    _record(f"{label} {x}")
    return x
