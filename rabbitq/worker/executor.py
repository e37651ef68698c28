"""Running task functions: ``async def`` on the event loop, plain functions in a thread pool.

Plain functions never run on the loop's thread, so a slow or CPU-bound task cannot starve the
connection's heartbeats. ``concurrency`` bounds how many tasks run at once in this process.
"""

from __future__ import annotations

import asyncio
import contextvars
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rabbitq.task import Task, TaskRequest, current_request


class Executor:
    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self._threads = ThreadPoolExecutor(
            max_workers=concurrency, thread_name_prefix="rabbitq-task"
        )

    async def run(self, task: Task, request: TaskRequest) -> Any:
        """Run ``task`` with ``request``'s arguments; exceptions propagate to the caller."""
        args, kwargs = request.args, request.kwargs
        if task.is_async:
            # Each delivery is its own asyncio task, so this setting stays with this message.
            current_request.set(request)
            return await task(*args, **kwargs)
        context = contextvars.copy_context()
        context.run(current_request.set, request)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._threads, lambda: context.run(task, *args, **kwargs)
        )

    def shutdown(self, wait: bool = True) -> None:
        self._threads.shutdown(wait=wait, cancel_futures=True)
