"""The rpc backend's ReplyBox: asyncio waiters come and go with their callers."""

from __future__ import annotations

import asyncio

import pytest

from rabbitq.results.meta import SUCCESS, ResultMeta
from rabbitq.results.replies import ReplyBox


async def started_waiting(box: ReplyBox, count: int = 1) -> None:
    while box.waiting() < count:
        await asyncio.sleep(0)


async def test_cancelled_await_ready_leaves_no_waiter() -> None:
    box = ReplyBox()
    waiter = asyncio.create_task(box.await_ready("task-id", None))
    await started_waiting(box)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert box.waiting() == 0


async def test_await_ready_past_its_timeout_leaves_no_waiter() -> None:
    box = ReplyBox()
    assert await box.await_ready("task-id", 0.01) is None
    assert box.waiting() == 0


async def test_cancelling_one_waiter_keeps_the_other_waiting_for_the_same_id() -> None:
    box = ReplyBox()
    cancelled = asyncio.create_task(box.await_ready("task-id", None))
    kept = asyncio.create_task(box.await_ready("task-id", None))
    await started_waiting(box, 2)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    box.put(ResultMeta("task-id", SUCCESS, result=3))
    meta = await kept
    assert meta is not None and meta.result == 3
    assert box.waiting() == 0
