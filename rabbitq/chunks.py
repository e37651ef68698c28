"""Many calls of one task in few messages: ``task.map``, ``task.starmap``, ``task.chunks``.

Each builds a signature of one of the built-in tasks (``builtin_tasks.py``, Celery's
``celery.map`` and ``celery.starmap``) whose worker calls the task once per item, in order.

Such a message goes where the mapped task goes (``prepare._routed_as``), not to the default queue
as in Celery: a worker that serves only the task's queue (``-Q emails``) runs it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rabbitq.canvas import Group, Signature, Task
from rabbitq.errors import ConfigurationError

MAP_TASK = "celery.map"
STARMAP_TASK = "celery.starmap"


def xmap(task: Task, items: Iterable[Any]) -> Signature:
    """One message that runs ``task(item)`` for each item, in one worker, in order."""
    return Signature(MAP_TASK, (), {"task": task.s().to_dict(), "it": list(items)}, app=task.app)


def xstarmap(task: Task, items: Iterable[Sequence[Any]]) -> Signature:
    """One message that runs ``task(*item)`` for each item."""
    return Signature(
        STARMAP_TASK, (), {"task": task.s().to_dict(), "it": [list(i) for i in items]}, app=task.app
    )


class Chunks(Group):
    """``task.chunks(items, n)``: a group of starmaps, applied like any group (``()``,
    ``apply_async``); ``.group()`` gives it as a plain group, as Celery's."""

    def group(self) -> Group:
        return Group(*self.tasks, app=self.app, **self.options)


def chunks(task: Task, items: Iterable[Sequence[Any]], size: int) -> Chunks:
    """Split ``items`` into messages of ``size`` calls each: a group of starmaps."""
    if size < 1:
        raise ConfigurationError("chunk size must be at least 1")
    listed = [list(item) for item in items]
    parts = [listed[start : start + size] for start in range(0, len(listed), size)]
    return Chunks(*[xstarmap(task, part) for part in parts], app=task.app)
