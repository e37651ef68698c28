"""Running task functions: ``async def`` on the event loop, plain functions in threads.

Plain functions never run on the loop's thread, so a slow or CPU-bound task cannot starve the
connection's heartbeats. ``concurrency`` bounds how many tasks run at once in this process.

The thread pool is our own rather than ``loop.run_in_executor``: finished tasks are handed
back to the loop in batches, with one wake-up of the loop for all results that arrived
meanwhile instead of one per task. At thousands of short tasks a second that wake-up (a pipe
write and a loop turn) is what a plain function costs most.
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Any

from rabbitq.task import Task, TaskRequest, current_request

_Job = tuple[Callable[[], Any], "asyncio.Future[Any]"]
_STOP = None


class _ThreadRunner:
    def __init__(self, loop: asyncio.AbstractEventLoop, threads: int) -> None:
        self._loop = loop
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._finished: list[tuple[asyncio.Future[Any], bool, Any]] = []
        self._lock = threading.Lock()
        self._wake_scheduled = False
        self._threads = [
            threading.Thread(target=self._work, name=f"rabbitq-task-{n}", daemon=True)
            for n in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, function: Callable[[], Any]) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self._loop.create_future()
        self._jobs.put((function, future))
        return future

    def stop(self) -> None:
        for _ in self._threads:
            self._jobs.put(_STOP)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            function, future = job
            try:
                outcome: tuple[asyncio.Future[Any], bool, Any] = (future, True, function())
            except StopIteration as exc:
                # asyncio refuses StopIteration as a future's exception (it would end the
                # awaiting generator instead): hand over what Python itself turns it into.
                failure = RuntimeError(f"task raised StopIteration: {exc!r}")
                failure.__cause__ = exc
                outcome = (future, False, failure)
            except BaseException as exc:  # handed to the awaiting coroutine
                outcome = (future, False, exc)
            with self._lock:
                self._finished.append(outcome)
                wake = not self._wake_scheduled
                self._wake_scheduled = True
            if wake:
                try:
                    self._loop.call_soon_threadsafe(self._hand_back)
                except RuntimeError:  # loop closed during shutdown
                    return

    def _hand_back(self) -> None:
        with self._lock:
            finished, self._finished = self._finished, []
            self._wake_scheduled = False
        for future, ok, value in finished:
            if future.cancelled():
                continue
            try:
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
            except Exception as exc:  # one refused outcome must not strand the rest
                future.set_exception(RuntimeError(f"task outcome could not be handed back: {exc}"))


class Executor:
    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self._runner: _ThreadRunner | None = None

    async def run(self, task: Task, request: TaskRequest) -> Any:
        """Run ``task`` with ``request``'s arguments; exceptions propagate to the caller."""
        args, kwargs = request.args, request.kwargs
        if task.is_async:
            # Each delivery is its own asyncio task, so this setting stays with this message.
            current_request.set(request)
            return await task(*args, **kwargs)
        if self._runner is None:
            self._runner = _ThreadRunner(asyncio.get_running_loop(), self.concurrency)
        context = contextvars.copy_context()
        context.run(current_request.set, request)
        return await self._runner.submit(lambda: context.run(task, *args, **kwargs))

    def shutdown(self) -> None:
        if self._runner is not None:
            self._runner.stop()
