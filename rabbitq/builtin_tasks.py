"""Tasks every app has, under Celery's names: ``celery.map``, ``celery.starmap`` and
``celery.backend_cleanup``.

``task.map(items)``, ``task.starmap(items)`` and each message of ``task.chunks(items, n)``
run one of these: a single message whose worker calls the task once per item, in order, and
returns the list of results.

``celery.backend_cleanup`` deletes the expired results of a backend that keeps them in a
database (PostgreSQL); schedule it in beat as Celery users do (``cron="0 4 * * *"``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from rabbitq.errors import TaskArgumentsError
from rabbitq.task import Task

if TYPE_CHECKING:
    from rabbitq.results.backend import ResultBackend


class Registry(Protocol):
    """What registering needs of the app (a protocol: the app calls this, not the reverse)."""

    def task(self, *, name: str) -> Callable[[Callable[..., Any]], Task]: ...

    def get_task(self, name: str) -> Task: ...

    @property
    def backend(self) -> ResultBackend | None: ...


def register_builtin_tasks(app: Registry) -> None:
    def target(task: Mapping[str, Any]) -> Task:
        name = task.get("task") if isinstance(task, Mapping) else None
        if not isinstance(name, str):
            raise TaskArgumentsError(f"not a task signature: {task!r}")
        return app.get_task(name)

    def run_map(task: Mapping[str, Any], it: Sequence[Any]) -> list[Any]:
        function = target(task)
        return [_call(function, (item,)) for item in it]

    def run_starmap(task: Mapping[str, Any], it: Sequence[Sequence[Any]]) -> list[Any]:
        function = target(task)
        return [_call(function, tuple(item)) for item in it]

    def backend_cleanup() -> int:
        backend = app.backend
        return backend.cleanup() if backend is not None else 0

    app.task(name="celery.map")(run_map)
    app.task(name="celery.starmap")(run_starmap)
    app.task(name="celery.backend_cleanup")(backend_cleanup)


def _call(task: Task, args: tuple[Any, ...]) -> Any:
    result = task(*args)
    if task.is_async:  # built-ins run in a worker thread: give the coroutine its own loop
        return asyncio.run(result)
    return result
