"""Stopping a running task from outside: ``RunControl``, the handle on one run.

A middleware (time limits today; revoke-and-terminate later) holds the handle and asks for
one of three things; the executor binds the handle to whatever runs the task:

* ``interrupt_soft()`` — raise ``SoftTimeLimitExceeded`` inside the task so it can clean up.
  An ``async def`` task gets it at its current ``await`` (the delivery's asyncio task is
  cancelled, and the cancellation is turned into that exception at the task's own frame). A
  thread gets it as an asynchronous exception, which Python delivers only between bytecodes:
  never inside ``time.sleep``, a socket read, a lock wait or C code.
* ``interrupt_hard()`` — stop the task: a thread gets ``TimeLimitExceeded`` the same way; an
  ``async def`` task is cancelled. The run then ends in ``TimeLimitExceeded``.
* ``abandon()`` — a thread that did not stop stops counting as running: its awaiter gets
  ``Abandoned`` at once, a fresh thread takes its place, and the worker recycles the process
  (the only way to end a thread blocked in C).

An asynchronous exception can arrive late, after the task returned. It never reaches the
thread's next task: the thread clears any pending one, under the same lock the interrupter
takes, before it picks up another job (``finish_thread``).
"""

from __future__ import annotations

import asyncio
import ctypes
import signal
import threading
from collections.abc import Callable
from typing import Any

from rabbitq.errors import SoftTimeLimitExceeded, Terminated, TimeLimitExceeded


class Abandoned(Exception):
    """The run did not stop after its hard time limit: the worker no longer waits for it."""


class _SoftInterrupt(SoftTimeLimitExceeded):
    """Injected into a thread (a type without arguments: CPython instantiates it there)."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(args or ("soft time limit exceeded",)))


class _HardInterrupt(TimeLimitExceeded):
    def __init__(self, *args: object) -> None:
        super().__init__(*(args or ("time limit exceeded",)))


class _TerminateInterrupt(Terminated):
    def __init__(self, *args: object) -> None:
        super().__init__(*(args or ("revoked and terminated",)))


INJECTED = (_SoftInterrupt, _HardInterrupt, _TerminateInterrupt)  # what a thread may receive

# The signals that stop a worker process: the main thread's alone (``process.py``); every
# task thread blocks them.
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


def being_cancelled() -> bool:
    """Is the running asyncio task being cancelled (by the worker: shutdown, a lost channel)?"""
    current = asyncio.current_task()
    return current is not None and current.cancelling() > 0


def _set_async_exc(thread_id: int, exception: type[BaseException] | None) -> int:
    """CPython's way to raise in another thread (``None`` clears a pending one)."""
    return int(
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(thread_id), ctypes.py_object(exception) if exception else None
        )
    )


class RunControl:
    """The handle on one run of a task; every method is called on the worker's event loop
    except the ``*_thread`` ones, which the task's thread calls."""

    __slots__ = (
        "_async_task",
        "_finished",
        "_lock",
        "_on_abandon",
        "_pending",
        "_thread_id",
        "_to_deliver",
        "abandoned",
        "hard_limit",
        "hard_requested",
        "soft_limit",
        "soft_requested",
        "terminate_requested",
    )

    def __init__(self, soft_limit: float | None = None, hard_limit: float | None = None) -> None:
        # Seconds, for messages and for whether a soft interrupt can come at all.
        self.soft_limit = soft_limit
        self.hard_limit = hard_limit
        self._lock = threading.Lock()
        self._thread_id: int | None = None
        self._pending: type[BaseException] | None = None
        self._finished = False
        self._async_task: asyncio.Task[Any] | None = None
        self._to_deliver: type[BaseException] | None = None
        self._on_abandon: Callable[[], None] | None = None
        self.soft_requested = False
        self.hard_requested = False
        self.terminate_requested = False
        self.abandoned = False

    # -- asked by a middleware ----------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self._finished

    def interrupt_soft(self) -> None:
        if self._finished or self.soft_requested:
            return
        self.soft_requested = True
        self._interrupt(_SoftInterrupt, soft=True)

    def terminate(self) -> None:
        """Revoked with ``terminate=True``: ``Terminated`` is raised in the task, the way the
        soft limit is."""
        if self._finished or self.terminate_requested:
            return
        self.terminate_requested = True
        self._interrupt(_TerminateInterrupt, soft=True)

    def interrupt_hard(self) -> None:
        if self._finished:
            return
        self.hard_requested = True
        self._interrupt(_HardInterrupt, soft=False)

    def abandon(self) -> None:
        """Stop waiting for a thread that did not stop; no effect on a finished run."""
        with self._lock:  # against a thread finishing at this very moment
            if self._finished or self.abandoned or self._on_abandon is None:
                return
            self.abandoned = True
        self._on_abandon()

    def _interrupt(self, exception: type[BaseException], *, soft: bool) -> None:
        if self._async_task is not None:
            self._to_deliver = exception if soft else None
            self._async_task.cancel()
            return
        with self._lock:
            if self._finished:
                return
            if self._thread_id is None:
                self._pending = exception  # raised as the thread starts the job
            else:
                _set_async_exc(self._thread_id, exception)

    # -- the executor's side ------------------------------------------------------------------

    def bind_async(self, task: asyncio.Task[Any]) -> None:
        self._async_task = task

    def finish_async(self) -> None:
        self._finished = True
        self._async_task = None

    def take_delivered(self) -> type[BaseException] | None:
        """An ``async def`` task was cancelled: for the soft limit or a terminate? (Then the
        cancellation becomes that exception in the task's frame.)"""
        exception, self._to_deliver = self._to_deliver, None
        return exception

    def on_abandon(self, callback: Callable[[], None]) -> None:
        self._on_abandon = callback

    def start_thread(self) -> None:
        """The task's thread, before it calls the task: raises an interrupt asked for already."""
        with self._lock:
            self._thread_id = threading.get_ident()
            pending, self._pending = self._pending, None
        if pending is not None:
            raise pending()

    def finish_thread(self) -> None:
        """The task's thread, after the task returned or raised: no interrupt can reach it
        after this, and a pending one is cleared. A late one raised here is discarded."""
        while True:
            try:
                with self._lock:
                    self._finished = True
                    # Only an interrupt asked for can be pending (the flags are set before
                    # the lock is taken to send one): most runs skip the call.
                    interrupted = self.soft_requested or self.hard_requested
                    if interrupted and self._thread_id is not None:
                        _set_async_exc(self._thread_id, None)
                    self._thread_id = None
                return
            except INJECTED:
                continue


class SoftLimitAware:
    """Awaits a task's coroutine; a cancellation that ``control`` says is the soft limit is
    raised in the coroutine as ``SoftTimeLimitExceeded`` instead (and the asyncio task's
    cancellation count restored, so the task's own ``asyncio.timeout`` blocks are not
    confused). The same for a terminate (``Terminated``)."""

    __slots__ = ("_control", "_coroutine")

    def __init__(self, coroutine: Any, control: RunControl) -> None:
        self._coroutine = coroutine
        self._control = control

    def __await__(self) -> Any:
        inner = self._coroutine.__await__()
        to_send: Any = None
        to_throw: BaseException | None = None
        while True:
            try:
                yielded = inner.send(to_send) if to_throw is None else inner.throw(to_throw)
            except StopIteration as stop:
                return stop.value
            to_send, to_throw = None, None
            try:
                to_send = yield yielded
            except asyncio.CancelledError as cancelled:
                to_throw = cancelled
                delivered = self._control.take_delivered()
                if delivered is not None:
                    current = asyncio.current_task()
                    # Ours, spent; unless the worker cancelled too, whose cancellation goes on.
                    if current is None or current.uncancel() == 0:
                        to_throw = delivered()
                        to_throw.__context__ = cancelled
            except BaseException as exc:  # thrown in by the event loop: pass it on
                to_throw = exc
