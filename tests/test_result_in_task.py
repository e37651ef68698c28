"""``get()`` inside a running task raises at once (Celery's rule), with Celery's opt-out."""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any

import pytest

import rabbitq
from rabbitq.results.meta import SUCCESS, ResultMeta
from rabbitq.results.rpc import RpcBackend
from rabbitq.task import TaskRequest, current_request


def inside_a_task(call: Callable[[], Any]) -> Any:
    """Run ``call`` as the worker runs a task: with ``current_request`` set in its context."""
    context = contextvars.copy_context()
    context.run(current_request.set, TaskRequest(id="outer-id", task="outer", args=(), kwargs={}))
    return context.run(call)


@pytest.fixture
def app() -> rabbitq.App:
    app = rabbitq.App("unit", broker="amqp://guest:guest@127.0.0.1:1/", result_backend="rpc://")
    backend = app.backend
    assert isinstance(backend, RpcBackend)
    backend.box.put(ResultMeta("child-id", SUCCESS, result=5))
    return app


def test_get_inside_a_task_raises_get_inside_task_error(app: rabbitq.App) -> None:
    with pytest.raises(rabbitq.GetInsideTaskError, match=r"never call result\.get"):
        inside_a_task(lambda: app.AsyncResult("child-id").get(timeout=1))


def test_get_inside_a_task_is_a_runtime_error_as_in_celery(app: rabbitq.App) -> None:
    with pytest.raises(RuntimeError):
        inside_a_task(lambda: app.AsyncResult("child-id").get(timeout=1))


def test_group_get_inside_a_task_raises_get_inside_task_error(app: rabbitq.App) -> None:
    group = rabbitq.GroupResult("group-id", [app.AsyncResult("child-id")], app)
    with pytest.raises(rabbitq.GetInsideTaskError):
        inside_a_task(lambda: group.get(timeout=1))


def test_get_inside_a_task_with_disable_sync_subtasks_false_waits(app: rabbitq.App) -> None:
    result = app.AsyncResult("child-id")
    assert inside_a_task(lambda: result.get(timeout=1, disable_sync_subtasks=False)) == 5


def test_get_outside_a_task_waits(app: rabbitq.App) -> None:
    assert app.AsyncResult("child-id").get(timeout=1) == 5
