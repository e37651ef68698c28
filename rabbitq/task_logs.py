"""Log records that say which task wrote them, in plain text or one JSON object per line.

``TaskLogFilter`` reads the running task's request (``rabbitq.request.current_request``: set
for the task's own code, in its thread or its asyncio task, and for the worker's handling
of that delivery) and adds to every record it passes: ``task_id``, ``task_name``,
``task_queue``, ``task_retries``, and the trace context, ``task_root_id`` (the first task of
the workflow; kept through retries, countdowns, chain steps and the tasks a task sends) and
``task_parent_id``. Outside a task they are ``None``. A filter on a handler sees every
record that reaches the handler, so ``logging.getLogger("shop")`` in user code carries the
fields as the worker's own loggers do.

``JsonLogFormatter`` writes each record as one JSON object: time, level, logger, process,
message, the task fields when a task is running, and the formatted exception if any.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any, Literal

from rabbitq.errors import ConfigurationError
from rabbitq.request import current_request

LogFormat = Literal["plain", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("plain", "json")

TASK_FIELDS = (
    "task_id",
    "task_name",
    "task_queue",
    "task_retries",
    "task_root_id",
    "task_parent_id",
)

# The worker's plain format; ``task`` is "name[id]: " on the records user code writes while a
# task runs, else empty (rabbitq's own lines name the task in their message already).
PLAIN_FORMAT = (
    "[%(asctime)s: %(levelname)s/%(processName)s %(process)d] %(name)s: %(task)s%(message)s"
)


class TaskLogFilter(logging.Filter):
    """Adds the running task's fields to each record (never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = current_request.get()
        if request is None:
            values: tuple[Any, ...] = (None,) * len(TASK_FIELDS)
            record.task = ""
        else:
            values = (
                request.id,
                request.task,
                request.queue,
                request.retries,
                request.root_id or request.id,
                request.parent_id,
            )
            own = record.name == "rabbitq" or record.name.startswith("rabbitq.")
            record.task = "" if own else f"{request.task}[{request.id}]: "
        for name, value in zip(TASK_FIELDS, values, strict=True):
            setattr(record, name, value)
        return True


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record; the task fields only while a task runs."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "process": record.process,
            "message": record.getMessage(),
        }
        if getattr(record, "task_id", None) is not None:
            for name in TASK_FIELDS:
                document[name] = getattr(record, name)
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        return json.dumps(document, default=repr)


def check_log_format(value: str) -> LogFormat:
    """``value`` as a log format, or a ``ConfigurationError`` naming the choices."""
    for known in LOG_FORMATS:
        if value == known:
            return known
    raise ConfigurationError(
        f"unknown log format {value!r}: choose one of {', '.join(LOG_FORMATS)}"
    )


def task_log_handler(stream: Any, log_format: LogFormat) -> logging.Handler:
    """A stream handler that writes ``log_format`` with the task fields on every record."""
    handler = logging.StreamHandler(stream)
    handler.addFilter(TaskLogFilter())
    if log_format == "json":
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter(PLAIN_FORMAT))
    return handler
