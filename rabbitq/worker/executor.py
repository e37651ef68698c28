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
import signal
import threading
from collections.abc import Callable
from typing import Any

from rabbitq.errors import Terminated, TimeLimitExceeded
from rabbitq.task import Task, TaskRequest, current_request
from rabbitq.worker.interrupts import (
    INJECTED,
    STOP_SIGNALS,
    Abandoned,
    RunControl,
    SoftLimitAware,
    being_cancelled,
)

_Job = tuple[Callable[[], Any], "asyncio.Future[Any]", RunControl | None]
_STOP = None


class _ThreadRunner:
    def __init__(self, loop: asyncio.AbstractEventLoop, threads: int) -> None:
        self._loop = loop
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._finished: list[tuple[asyncio.Future[Any], bool, Any]] = []
        self._lock = threading.Lock()
        self._wake_scheduled = False
        self._started = 0
        self._threads: list[threading.Thread] = []
        for _ in range(threads):
            self._add_thread()

    def _add_thread(self) -> None:
        thread = threading.Thread(
            target=self._work, name=f"rabbitq-task-{self._started}", daemon=True
        )
        self._started += 1
        self._threads.append(thread)
        thread.start()

    def submit(
        self, function: Callable[[], Any], control: RunControl | None = None
    ) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self._loop.create_future()
        if control is not None:
            control.on_abandon(lambda: self._abandon(future))
        self._jobs.put((function, future, control))
        return future

    def _abandon(self, future: asyncio.Future[Any]) -> None:
        """The thread running ``future``'s job is stuck: a fresh one takes its place (it
        leaves the pool when, if ever, its task returns), and the awaiter stops waiting."""
        self._threads = [thread for thread in self._threads if thread.is_alive()]
        self._add_thread()
        if not future.done():
            future.set_exception(Abandoned())

    def stop(self) -> None:
        for _ in self._threads:
            self._jobs.put(_STOP)

    def _work(self) -> None:
        # Stop signals are the main thread's: one delivered to a task thread would be heard
        # late, and lost if the process re-executes itself meanwhile (``process.py``).
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        while True:
            job = self._jobs.get()
            if job is None:
                return
            function, future, control = job
            outcome = _call(function, future, control)
            if control is not None and control.abandoned:
                return  # replaced while stuck: its outcome is nobody's any more
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
            if future.done():  # cancelled, or abandoned
                continue
            try:
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
            except Exception as exc:  # one refused outcome must not strand the rest
                future.set_exception(RuntimeError(f"task outcome could not be handed back: {exc}"))


def _call(
    function: Callable[[], Any], future: asyncio.Future[Any], control: RunControl | None
) -> tuple[asyncio.Future[Any], bool, Any]:
    """Run one job; with a ``control``, no interrupt sent to it escapes: one that lands in
    this code after the task (between bytecodes, anywhere) is caught here, and the loop goes
    on until ``finish_thread`` has run, after which none can come."""
    outcome: tuple[asyncio.Future[Any], bool, Any] | None = None
    while True:
        try:
            if outcome is None:
                outcome = _outcome(function, future, control)
            if control is not None:
                control.finish_thread()
            return outcome
        except INJECTED as late:
            if outcome is None:
                outcome = (future, False, late)


def _outcome(
    function: Callable[[], Any], future: asyncio.Future[Any], control: RunControl | None
) -> tuple[asyncio.Future[Any], bool, Any]:
    try:
        if control is not None:
            control.start_thread()
        return (future, True, function())
    except StopIteration as exc:
        # asyncio refuses StopIteration as a future's exception (it would end the awaiting
        # generator instead): hand over what Python itself turns it into.
        failure = RuntimeError(f"task raised StopIteration: {exc!r}")
        failure.__cause__ = exc
        return (future, False, failure)
    except BaseException as exc:  # handed to the awaiting coroutine
        return (future, False, exc)


class Executor:
    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self._runner: _ThreadRunner | None = None

    async def run(self, task: Task, request: TaskRequest, control: RunControl | None = None) -> Any:
        """Run ``task`` with ``request``'s arguments; exceptions propagate to the caller.

        With a ``control``, the run can be interrupted (``interrupts.py``): a run stopped at
        its hard limit raises ``TimeLimitExceeded``, an abandoned one ``Abandoned``."""
        args, kwargs = request.args, request.kwargs
        if task.is_async:
            # Each delivery is its own asyncio task, so this setting stays with this message.
            current_request.set(request)
            if control is None:
                return await task(*args, **kwargs)
            return await _run_controlled(task(*args, **kwargs), control)
        if self._runner is None:
            self._runner = _ThreadRunner(asyncio.get_running_loop(), self.concurrency)
        context = contextvars.copy_context()
        context.run(current_request.set, request)
        future = self._runner.submit(lambda: context.run(task, *args, **kwargs), control)
        if control is None:
            return await future
        try:
            return await future
        except Abandoned:
            raise
        except BaseException as exc:
            if control.hard_requested and not _ours(exc):
                raise _stopped(control) from exc
            raise

    def shutdown(self) -> None:
        if self._runner is not None:
            self._runner.stop()


async def _run_controlled(coroutine: Any, control: RunControl) -> Any:
    current = asyncio.current_task()
    assert current is not None
    control.bind_async(current)
    try:
        # Always through the wrapper: a soft limit or a terminate (which any run may get)
        # is raised at the task's own ``await``, where its ``except`` can hear it.
        return await SoftLimitAware(coroutine, control)
    except asyncio.CancelledError as exc:
        if not (control.hard_requested or control.terminate_requested):
            raise
        # Our own cancellation, spent. If the worker cancelled too, its one still counts:
        # then this is the worker's (the broker redelivers), not a time limit.
        if current.uncancel() > 0:
            raise
        if control.hard_requested:
            raise _stopped(control) from exc
        raise Terminated("revoked and terminated") from exc
    finally:
        control.finish_async()


def _ours(error: BaseException) -> bool:
    return isinstance(error, asyncio.CancelledError) and being_cancelled()


def _stopped(control: RunControl) -> TimeLimitExceeded:
    limit = f" ({control.hard_limit:g}s)" if control.hard_limit is not None else ""
    return TimeLimitExceeded(f"hard time limit{limit} exceeded; the task was stopped")
