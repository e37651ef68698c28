"""What a running task knows about its message: ``TaskRequest``, and the context variable that
holds it while the task runs (``self.request``, ``task.request``).

A leaf module: the worker sets it, tasks and result handles read it, and none of them needs
the others for that.
"""

from __future__ import annotations

import contextvars
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rabbitq.errors import TaskError


@dataclass(frozen=True)
class TaskRequest:
    """What a running task knows about its message (``self.request`` with ``bind=True``)."""

    id: str
    task: str
    args: Sequence[Any]
    kwargs: Mapping[str, Any]
    retries: int = 0
    root_id: str | None = None
    parent_id: str | None = None
    group: str | None = None
    queue: str | None = None
    routing_key: str | None = None
    redelivered: bool = False
    eta: dt.datetime | None = None
    headers: Mapping[str, Any] = field(default_factory=dict)
    reply_to: str | None = None

    @property
    def error(self) -> TaskError | None:
        """In an errback: the failure it was called for (type, message, traceback)."""
        info = self.headers.get(ERROR_HEADER)
        if not isinstance(info, Mapping):
            return None
        return TaskError(
            str(info.get("exc_type", "Error")),
            str(info.get("exc_message", "")),
            info.get("traceback"),
            exc_module=info.get("exc_module"),
            task_id=info.get("task_id"),
        )


# Set on an errback's message: what failed, so the errback can say why.
ERROR_HEADER = "rabbitq_error"

current_request: contextvars.ContextVar[TaskRequest | None] = contextvars.ContextVar(
    "rabbitq_current_request", default=None
)
