"""Task states and the result document, in Celery's shape. Pure: no I/O.

One document describes a task's outcome wherever it is kept — a reply on the caller's queue
(rpc) or a Redis key — so both backends and Celery's own readers agree::

    {"task_id": ..., "status": "SUCCESS", "result": 42, "traceback": None,
     "children": [], "date_done": "2026-11-25T10:00:00.123456+00:00"}

A failure's ``result`` describes the exception as Celery does without pickle::

    {"exc_type": "ValueError", "exc_message": ["boom"], "exc_module": "builtins"}
"""

from __future__ import annotations

import traceback as traceback_module
from dataclasses import dataclass, field
from typing import Any

from rabbitq.errors import MessageDecodeError, ResultEncodeError, TaskError
from rabbitq.message import utcnow
from rabbitq.serializers import Serializer

PENDING = "PENDING"
STARTED = "STARTED"
RETRY = "RETRY"
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
REVOKED = "REVOKED"

READY_STATES = frozenset({SUCCESS, FAILURE, REVOKED})
EXCEPTION_STATES = frozenset({FAILURE, RETRY, REVOKED})


@dataclass
class ResultMeta:
    """A task's state and, once ready, its result (or the description of its error)."""

    task_id: str
    status: str = PENDING
    result: Any = None
    traceback: str | None = None
    children: list[Any] = field(default_factory=list)
    date_done: str | None = None

    @property
    def ready(self) -> bool:
        return self.status in READY_STATES

    def to_document(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "status": self.status,
            "result": self.result,
            "traceback": self.traceback,
            "children": self.children,
            "date_done": self.date_done,
        }

    def error(self) -> TaskError:
        """The ``TaskError`` a FAILURE (or REVOKED) result stands for."""
        info = self.result if isinstance(self.result, dict) else {}
        message = info.get("exc_message", self.result)
        if isinstance(message, list | tuple):
            message = ", ".join(str(part) for part in message) if message else ""
        return TaskError(
            str(info.get("exc_type") or self.status),
            str(message if message is not None else ""),
            self.traceback,
            exc_module=info.get("exc_module"),
            task_id=self.task_id,
        )


def success(task_id: str, value: Any, children: list[Any] | None = None) -> ResultMeta:
    """``children``: what the task sent on, in Celery's form (``handles.as_tuple``)."""
    return ResultMeta(
        task_id, SUCCESS, value, children=list(children or []), date_done=utcnow().isoformat()
    )


def failure(task_id: str, exc: BaseException, traceback: str | None = None) -> ResultMeta:
    if traceback is None:
        traceback = "".join(traceback_module.format_exception(exc))
    return ResultMeta(
        task_id, FAILURE, describe_exception(exc), traceback, date_done=utcnow().isoformat()
    )


def revoked(task_id: str, exc: BaseException) -> ResultMeta:
    return ResultMeta(task_id, REVOKED, describe_exception(exc), date_done=utcnow().isoformat())


def state_only(task_id: str, status: str, exc: BaseException | None = None) -> ResultMeta:
    """STARTED or RETRY: not ready; RETRY carries the reason, as Celery's does."""
    return ResultMeta(task_id, status, describe_exception(exc) if exc is not None else None)


def describe_exception(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, TaskError):  # a failure passed along (a chord member's): keep the original
        return {
            "exc_type": exc.exc_type,
            "exc_message": [exc.exc_message],
            "exc_module": exc.exc_module or "builtins",
        }
    return {
        "exc_type": type(exc).__name__,
        "exc_message": [_plain(arg) for arg in exc.args],
        "exc_module": type(exc).__module__,
    }


def _plain(value: Any) -> Any:
    # Exception arguments may be anything; only plain values survive every serializer.
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)


def encode_meta(meta: ResultMeta, serializer: Serializer) -> bytes:
    """Serialize; a result the serializer cannot hold becomes a FAILURE saying so."""
    try:
        return serializer.dumps(meta.to_document())
    except (TypeError, ValueError, OverflowError) as exc:
        if meta.status != SUCCESS:
            raise
        error = ResultEncodeError(
            f"the result of task {meta.task_id} ({type(meta.result).__name__}) cannot be "
            f"serialized with {serializer.name}: {exc}"
        )
        return serializer.dumps(failure(meta.task_id, error, "").to_document())


def check_encodable(task_id: str, value: Any, serializer: Serializer) -> None:
    """Raise ``ResultEncodeError`` now, in the worker, rather than later at the caller."""
    try:
        serializer.dumps(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ResultEncodeError(
            f"the result of task {task_id} ({type(value).__name__}) cannot be serialized "
            f"with {serializer.name}: {exc}"
        ) from exc


def decode_meta(document: Any, task_id: str | None = None) -> ResultMeta:
    if not isinstance(document, dict) or "status" not in document:
        raise MessageDecodeError("a result must be a mapping with a 'status'")
    identifier = document.get("task_id") or task_id
    if not isinstance(identifier, str):
        raise MessageDecodeError("a result must carry its task_id")
    return ResultMeta(
        task_id=identifier,
        status=str(document["status"]),
        result=document.get("result"),
        traceback=document.get("traceback"),
        children=list(document.get("children") or []),
        date_done=document.get("date_done"),
    )
