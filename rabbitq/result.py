"""The handle ``delay()`` and ``apply_async()`` return.

For now it carries the task id (stable across retries and redeliveries: use it to make side
effects idempotent). Result backends (rpc, Redis) make it an awaitable result later.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rabbitq.app import App


class AsyncResult:
    """A published task, identified by its id."""

    __slots__ = ("app", "id", "task_name")

    def __init__(self, id: str, app: App | None = None, task_name: str | None = None) -> None:
        self.id = id
        self.app = app
        self.task_name = task_name

    def __str__(self) -> str:
        return self.id

    def __repr__(self) -> str:
        name = f" {self.task_name}" if self.task_name else ""
        return f"<AsyncResult{name} {self.id}>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AsyncResult):
            return self.id == other.id
        if isinstance(other, str):
            return self.id == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.id)
