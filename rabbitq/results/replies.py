"""Where results wait for their caller: one box per process, filled by the reply consumers.

The rpc backend's replies arrive on the publishers' reply queues (the pika I/O thread for
synchronous code, an event loop for asyncio code); callers wait here for the ids they want,
from any thread or loop. Results nobody asks for are kept (Celery's rpc backend does the
same) up to a bound, oldest dropped first, so a caller that never calls ``get()`` does not
grow the process without limit.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time

from rabbitq.results.meta import ResultMeta

log = logging.getLogger("rabbitq.results")

KEEP_AT_MOST = 100_000


class ReplyBox:
    def __init__(self, keep_at_most: int = KEEP_AT_MOST) -> None:
        self._results: collections.OrderedDict[str, ResultMeta] = collections.OrderedDict()
        self._keep_at_most = keep_at_most
        self._changed = threading.Condition()
        self._async_waiters: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}

    def put(self, meta: ResultMeta) -> None:
        with self._changed:
            known = self._results.get(meta.task_id)
            if known is not None and known.ready and not meta.ready:
                return  # a late STARTED/RETRY never hides the final state
            self._results[meta.task_id] = meta
            self._results.move_to_end(meta.task_id)
            while len(self._results) > self._keep_at_most:
                dropped, _ = self._results.popitem(last=False)
                log.warning(
                    "dropped the unread result of task %s (over %d kept)",
                    dropped,
                    self._keep_at_most,
                )
            self._changed.notify_all()
            waiters = self._async_waiters.pop(meta.task_id, []) if meta.ready else []
        for loop, event in waiters:
            loop.call_soon_threadsafe(event.set)

    def get(self, task_id: str) -> ResultMeta | None:
        with self._changed:
            return self._results.get(task_id)

    def forget(self, task_id: str) -> None:
        with self._changed:
            self._results.pop(task_id, None)

    def wait(self, task_ids: list[str], timeout: float | None) -> dict[str, ResultMeta]:
        """The ready results of ``task_ids``: all of them, or those ready at the deadline."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while True:
                ready = {
                    task_id: meta
                    for task_id in task_ids
                    if (meta := self._results.get(task_id)) is not None and meta.ready
                }
                if len(ready) == len(task_ids):
                    return ready
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return ready
                self._changed.wait(remaining)

    async def await_ready(self, task_id: str, timeout: float | None) -> ResultMeta | None:
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        with self._changed:
            meta = self._results.get(task_id)
            if meta is not None and meta.ready:
                return meta
            self._async_waiters.setdefault(task_id, []).append((loop, event))
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return None
        finally:
            # Timed out, or cancelled (a caller's own timeout, a task group that gave up):
            # a waiter left behind would keep its loop and event until the result came,
            # which may be never.
            self._stop_waiting(task_id, loop, event)
        return self.get(task_id)

    def _stop_waiting(
        self, task_id: str, loop: asyncio.AbstractEventLoop, event: asyncio.Event
    ) -> None:
        with self._changed:
            waiters = self._async_waiters.get(task_id, [])
            if (loop, event) in waiters:
                waiters.remove((loop, event))
                if not waiters:
                    self._async_waiters.pop(task_id, None)

    def waiting(self) -> int:
        """How many asyncio callers are waiting for a result now."""
        with self._changed:
            return sum(len(waiters) for waiters in self._async_waiters.values())
