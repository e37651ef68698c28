"""How many tasks run at once in one worker process: ``concurrency`` slots.

``asyncio.Semaphore`` would do, but it is on every delivery's path twice and costs more than
it must: each acquire looks up the running loop, and a release scans its waiters. Here a
free slot is taken with no await at all, and a release hands its slot straight to the
oldest waiter (first come, first served: a prefetched delivery never overtakes an earlier
one).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib

from rabbitq.errors import ConfigurationError


class Slots:
    __slots__ = ("_loop", "_waiters", "free", "size")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ConfigurationError(f"concurrency must be at least 1, not {size}")
        self.size = size
        self.free = size
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def take(self) -> None:
        """Return once a slot is ours; give it back with ``release``."""
        if self.free and not self._waiters:
            self.free -= 1
            return
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot, then cancelled before using it: pass it on
            else:
                with contextlib.suppress(ValueError):  # a release may have dropped it already
                    self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on: ``free`` does not change
                return
        self.free += 1

    async def __aenter__(self) -> None:
        await self.take()

    async def __aexit__(self, *_exc: object) -> None:
        self.release()
