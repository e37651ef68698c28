"""What ``delay()`` and ``apply_async()`` return: a handle on the task's eventual result.

The task id is stable across retries and redeliveries (use it to make side effects
idempotent). With a result backend configured (``App(result_backend="rpc://")`` or
``"redis://..."``), ``get()`` waits for the outcome; without one, or for a task that ignores
its result, it raises ``ResultsDisabledError`` at once instead of waiting forever.

``AsyncResult[R]`` is typed by what the task returns (``R``, for type checkers only), so
``add.delay(1, 2).get()`` is an ``int`` for ``def add(a: int, b: int) -> int``.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, overload

from rabbitq.errors import (
    ConfigurationError,
    GetInsideTaskError,
    NotSupportedError,
    ResultsDisabledError,
    ResultTimeoutError,
    TaskError,
)
from rabbitq.request import current_request
from rabbitq.results.meta import FAILURE, REVOKED, SUCCESS, ResultMeta

if TYPE_CHECKING:
    # A default (PEP 696) lets ``AsyncResult`` alone mean ``AsyncResult[Any]``; typing has
    # defaults from 3.13 only, and type checkers read typing_extensions from their own stubs.
    from typing_extensions import TypeVar

    from rabbitq.results.backend import ResultBackend

    R = TypeVar("R", default=Any)
else:
    from typing import TypeVar

    R = TypeVar("R")


class HasBackend(Protocol):
    """What a result handle needs of the app: its backend (a protocol: handles sit below
    the app, which makes them)."""

    @property
    def backend(self) -> ResultBackend | None: ...


class AsyncResult(Generic[R]):
    """A published task, identified by its id; ``R`` is the type of its result."""

    __slots__ = ("app", "id", "ignored", "parent", "task_name")

    def __init__(
        self,
        id: str,
        app: HasBackend | None = None,
        task_name: str | None = None,
        *,
        ignored: bool = False,
        parent: AsyncResult | GroupResult | None = None,
    ) -> None:
        self.id = id
        self.app = app
        self.task_name = task_name
        self.ignored = ignored
        # The previous step's handle along a chain (a chord body's: its header's group), as
        # Celery's ``result.parent``; known to the caller that applied the workflow.
        self.parent = parent

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

    # -- state --------------------------------------------------------------------------------

    def _backend(self) -> ResultBackend:
        if self.ignored:
            raise ResultsDisabledError(
                f"task {self.task_name or self.id} ignores its result (ignore_result=True)"
            )
        backend = self.app.backend if self.app is not None else None
        if backend is None:
            raise ResultsDisabledError(
                "no result backend is configured: App(result_backend='rpc://') or "
                "'redis://host:6379/0'"
            )
        return backend

    def _meta(self) -> ResultMeta:
        return self._backend().state(self.id)

    @property
    def state(self) -> str:
        """PENDING, STARTED, RETRY, SUCCESS, FAILURE (or REVOKED)."""
        return self._meta().status

    status = state

    @property
    def result(self) -> Any:
        """The value, or the ``TaskError`` of a failure, or ``None`` while not ready."""
        meta = self._meta()
        return meta.error() if meta.status in (FAILURE, REVOKED) else meta.result

    @property
    def traceback(self) -> str | None:
        return self._meta().traceback

    @property
    def date_done(self) -> dt.datetime | None:
        """When the task finished (UTC), or ``None`` while it has not."""
        done = self._meta().date_done
        return dt.datetime.fromisoformat(done) if done else None

    @property
    def children(self) -> list[AsyncResult | GroupResult] | None:
        """What the finished task sent on: its ``link`` callbacks and its chain's next step,
        as Celery records them (``None`` while the task has not finished)."""
        meta = self._meta()
        if not meta.ready:
            return None
        return [result_from_tuple(child, self.app) for child in meta.children]

    def ready(self) -> bool:
        return self._meta().ready

    def successful(self) -> bool:
        return self._meta().status == SUCCESS

    def failed(self) -> bool:
        return self._meta().status == FAILURE

    def revoke(self, terminate: bool = False, signal: str | None = None) -> None:
        """Never start this task, on any worker, also after restarts (``app.control.revoke``);
        with ``terminate``, also stop it if it is running now."""
        control = getattr(self.app, "control", None)
        if control is None:
            raise ConfigurationError("this result has no app to revoke it through")
        control.revoke(self.id, terminate=terminate, signal=signal)

    def forget(self) -> None:
        """Drop the stored result (Redis key, or this process's unread reply)."""
        self._backend().forget(self.id)

    # -- waiting ------------------------------------------------------------------------------

    @overload
    def get(
        self,
        timeout: float | None = None,
        propagate: Literal[True] = True,
        *,
        disable_sync_subtasks: bool = True,
    ) -> R: ...

    @overload
    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        *,
        disable_sync_subtasks: bool = True,
    ) -> R | TaskError: ...

    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        *,
        disable_sync_subtasks: bool = True,
    ) -> R | TaskError:
        """Wait for the result. A failure raises ``TaskError`` (or returns it, ``propagate=False``).

        ``timeout`` in seconds (None: wait as long as it takes); past it, ``ResultTimeoutError``.
        Inside a running task it raises ``GetInsideTaskError`` at once, as Celery does, unless
        ``disable_sync_subtasks=False``.
        """
        refuse_inside_a_task(disable_sync_subtasks)
        found = self._backend().wait([self.id], timeout)
        meta = found.get(self.id)
        if meta is None:
            raise ResultTimeoutError(f"task {self.id} did not finish within {timeout:g}s")
        outcome: R | TaskError = _outcome(meta, propagate)
        return outcome

    @overload
    async def aget(self, timeout: float | None = None, propagate: Literal[True] = True) -> R: ...

    @overload
    async def aget(self, timeout: float | None = None, propagate: bool = True) -> R | TaskError: ...

    async def aget(self, timeout: float | None = None, propagate: bool = True) -> R | TaskError:
        """``get()`` for asyncio code: waits without blocking the loop."""
        meta = await self._backend().await_ready(self.id, timeout)
        if meta is None:
            raise ResultTimeoutError(f"task {self.id} did not finish within {timeout:g}s")
        outcome: R | TaskError = _outcome(meta, propagate)
        return outcome

    def __await__(self) -> Generator[Any, None, R]:
        return self.aget().__await__()


def refuse_inside_a_task(disable_sync_subtasks: bool) -> None:
    """Raise ``GetInsideTaskError`` when a task is running in this context.

    A task that waits for another task's result holds its worker slot (a thread, or the
    whole event loop for a blocking call in an ``async def`` task); once every slot waits,
    the tasks they wait for can never start. Chains, groups and chords pass results on
    without waiting.
    """
    if not disable_sync_subtasks:
        return
    request = current_request.get()
    if request is not None:
        raise GetInsideTaskError(
            f"never call result.get() within a task (task {request.task} {request.id}): it "
            "blocks a worker slot, and when every slot waits the awaited tasks never run. "
            "Use a chain or a chord callback instead, or pass disable_sync_subtasks=False "
            "if you know a free slot will run the subtask"
        )


def as_tuple(result: AsyncResult | GroupResult) -> list[Any]:
    """Celery's serialized form of a handle: ``[[id, parent], None]``, a group's with its
    members' forms in place of ``None`` (what a result's ``children`` hold)."""
    parent = as_tuple(result.parent) if result.parent is not None else None
    members = [as_tuple(r) for r in result.results] if isinstance(result, GroupResult) else None
    return [[result.id, parent], members]


def result_from_tuple(value: Any, app: HasBackend | None = None) -> AsyncResult | GroupResult:
    """A handle from Celery's serialized form (``as_tuple``); a bare id is taken too."""
    if isinstance(value, str):
        return AsyncResult(value, app)
    head, members = value
    task_id, parent = head if isinstance(head, list | tuple) else (head, None)
    parent_handle = result_from_tuple(parent, app) if parent else None
    if members is not None:
        results = [result_from_tuple(member, app) for member in members]
        return GroupResult(str(task_id), results, app, parent=parent_handle)
    return AsyncResult(str(task_id), app, parent=parent_handle)


def _outcome(meta: ResultMeta, propagate: bool) -> Any:
    if meta.status == SUCCESS:
        return meta.result
    error = meta.error()
    if propagate:
        raise error
    return error


class GroupResult:
    """The results of a group's members, in the group's order."""

    def __init__(
        self,
        id: str,
        results: list[AsyncResult | GroupResult],
        app: HasBackend | None = None,
        *,
        parent: AsyncResult | GroupResult | None = None,
    ) -> None:
        self.id = id
        self.results = results
        self.app = app
        self.parent = parent  # the step before the group in a chain, as ``AsyncResult.parent``

    def __repr__(self) -> str:
        return f"<GroupResult {self.id} ({len(self.results)} tasks)>"

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[AsyncResult | GroupResult]:
        return iter(self.results)

    def _leaves(self) -> list[AsyncResult]:
        leaves: list[AsyncResult] = []
        for result in self.results:
            leaves.extend(result._leaves() if isinstance(result, GroupResult) else [result])
        return leaves

    def _backend(self) -> ResultBackend:
        leaves = self._leaves()
        if not leaves:
            if self.app is None or self.app.backend is None:
                raise ResultsDisabledError("no result backend is configured")
            return self.app.backend
        return leaves[0]._backend()

    def completed_count(self) -> int:
        """How many members succeeded."""
        return sum(1 for leaf in self._leaves() if leaf.successful())

    def ready(self) -> bool:
        return all(leaf.ready() for leaf in self._leaves())

    def successful(self) -> bool:
        return all(leaf.successful() for leaf in self._leaves())

    def failed(self) -> bool:
        return any(leaf.failed() for leaf in self._leaves())

    def waiting(self) -> bool:
        """Is any member not finished yet?"""
        return not self.ready()

    def save(self) -> None:
        """Not supported: rabbitq's result backends keep each task's result, no group record."""
        raise NotSupportedError(_NO_GROUP_RECORDS)

    @classmethod
    def restore(cls, group_id: str, backend: Any = None, app: Any = None) -> GroupResult:
        """Not supported, as ``save()``."""
        raise NotSupportedError(_NO_GROUP_RECORDS)

    def revoke(self, terminate: bool = False, signal: str | None = None) -> None:
        """Revoke every member (one log entry for all), as Celery's ``GroupResult.revoke``."""
        control = getattr(self.app, "control", None)
        if control is None:
            raise ConfigurationError("this result has no app to revoke it through")
        control.revoke([leaf.id for leaf in self._leaves()], terminate=terminate, signal=signal)

    def forget(self) -> None:
        for leaf in self._leaves():
            leaf.forget()

    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        *,
        disable_sync_subtasks: bool = True,
    ) -> list[Any]:
        """Every member's result in order; the first failure raises (``propagate``).

        Inside a running task: ``GetInsideTaskError`` at once, as ``AsyncResult.get()``.
        """
        refuse_inside_a_task(disable_sync_subtasks)
        leaves = self._leaves()
        found = self._backend().wait([leaf.id for leaf in leaves], timeout)
        if len(found) < len({leaf.id for leaf in leaves}):
            missing = len(leaves) - len(found)
            raise ResultTimeoutError(
                f"group {self.id}: {missing} of {len(leaves)} tasks not finished within "
                f"{timeout:g}s"
            )
        return self._assemble(found, propagate)

    async def aget(self, timeout: float | None = None, propagate: bool = True) -> list[Any]:
        found: dict[str, ResultMeta] = {}
        deadline = None if timeout is None else time.monotonic() + timeout
        backend = self._backend()
        for leaf in self._leaves():
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            meta = await backend.await_ready(leaf.id, remaining)
            if meta is None:
                raise ResultTimeoutError(f"group {self.id} did not finish within {timeout:g}s")
            found[leaf.id] = meta
        return self._assemble(found, propagate)

    def join(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        *,
        disable_sync_subtasks: bool = True,
    ) -> list[Any]:
        return self.get(timeout, propagate, disable_sync_subtasks=disable_sync_subtasks)

    def _assemble(self, found: dict[str, ResultMeta], propagate: bool) -> list[Any]:
        def value(result: AsyncResult | GroupResult) -> Any:
            if isinstance(result, GroupResult):
                return [value(member) for member in result.results]
            return _outcome(found[result.id], propagate)

        return [value(result) for result in self.results]


_NO_GROUP_RECORDS = (
    "GroupResult.save() and GroupResult.restore() are not supported: rabbitq's result "
    "backends store each task's result, never a record of a group (Celery's rpc backend "
    "refuses them too). Keep the ids instead, ids = [r.id for r in result.results], and "
    "rebuild the handle: rabbitq.GroupResult(group_id, [app.AsyncResult(i) for i in ids], app)"
)
