"""Carry a trace id from the web request that enqueued a task into the task's own log lines,
through Celery's signals (the same receivers work on Celery).

    rabbitq worker -A examples.tracing -Q tracing          # in one terminal
    python -m examples.tracing                              # sends two tasks, each traced

Every log line the task writes then reads ``trace=<id> task=<task id>``. The trace id travels
in a message header set by ``before_task_publish``; ``task_prerun`` puts it in a context
variable that a logging filter reads, and ``task_postrun`` clears it. Context variables reach
thread tasks and ``async def`` tasks alike (see docs/middleware.md).
"""

from __future__ import annotations

import contextvars
import logging
import uuid
from typing import Any

import rabbitq
from rabbitq.signals import before_task_publish, task_postrun, task_prerun

app = rabbitq.App("tracing")  # broker from $RABBITQ_BROKER_URL
log = logging.getLogger("examples.tracing")

TRACE_HEADER = "x-trace-id"
trace_id: contextvars.ContextVar[str] = contextvars.ContextVar("trace_id", default="-")
running_task: contextvars.ContextVar[str] = contextvars.ContextVar("running_task", default="-")


class TraceFilter(logging.Filter):
    """Puts the current trace and task id on every log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.trace = trace_id.get()
        record.task_id = running_task.get()
        return True


@before_task_publish.connect
def stamp_trace(headers: dict[str, Any], **_: Any) -> None:
    # The caller's trace (a web request's, say), or a new one; follow-ups that a worker
    # publishes (chain steps, callbacks) inherit the running task's.
    headers.setdefault(TRACE_HEADER, trace_id.get() if trace_id.get() != "-" else uuid.uuid4().hex)


@task_prerun.connect
def enter_trace(task: rabbitq.Task, task_id: str, **_: Any) -> None:
    request = task.request
    headers = request.headers if request is not None else {}
    trace_id.set(str(headers.get(TRACE_HEADER, "-")))
    running_task.set(task_id)


@task_postrun.connect
def leave_trace(**_: Any) -> None:
    trace_id.set("-")
    running_task.set("-")


def install_log_format() -> None:
    handler = logging.StreamHandler()
    handler.addFilter(TraceFilter())
    handler.setFormatter(
        logging.Formatter("%(levelname)s trace=%(trace)s task=%(task_id)s %(message)s")
    )
    root = logging.getLogger("examples")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False


install_log_format()


@app.task(queue="tracing")
def charge(order_id: int) -> str:
    log.info("charging order %s", order_id)
    return f"charged {order_id}"


@app.task(queue="tracing")
async def notify(order_id: int) -> None:
    log.info("notifying about order %s", order_id)


def main() -> None:
    request_trace = uuid.uuid4().hex
    trace_id.set(request_trace)  # as a web framework's middleware would, per request
    charge.delay(1001)
    notify.delay(1001)
    print(f"sent charge and notify under trace {request_trace}")
    app.close()


if __name__ == "__main__":
    main()
