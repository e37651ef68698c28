"""The recycling middleware: when a worker process asks to be replaced, driven through the
real pipeline; and the resident memory it measures."""

from __future__ import annotations

import os

import rabbitq
from rabbitq.worker.recycling import Recycling, resident_kib
from tests.pipeline_support import Harness, harness, make_app, task_envelope

MIB = 1024 * 1024


def worker_with(recycling: Recycling) -> Harness:
    app: rabbitq.App = make_app(middleware=[recycling])

    @app.task(name="noop")
    def noop() -> None:
        return None

    @app.task(name="fails")
    def fails() -> None:
        raise ValueError("no")

    return harness(app)


async def test_recycling_is_asked_after_the_nth_task_and_not_before() -> None:
    asks: list[str] = []
    h = worker_with(Recycling(asks.append, max_tasks=3))
    await h.deliver(task_envelope("noop"))
    await h.deliver(task_envelope("noop"))
    assert asks == []
    await h.deliver(task_envelope("noop"))
    assert asks == ["it ran 3 tasks (--max-tasks-per-child 3)"]


async def test_a_failed_task_counts_towards_max_tasks() -> None:
    asks: list[str] = []
    h = worker_with(Recycling(asks.append, max_tasks=2))
    await h.deliver(task_envelope("noop"))
    await h.deliver(task_envelope("fails"))
    assert len(asks) == 1


async def test_recycling_is_asked_once_however_many_tasks_finish_after() -> None:
    asks: list[str] = []
    h = worker_with(Recycling(asks.append, max_tasks=1))
    for _ in range(3):
        await h.deliver(task_envelope("noop"))
    assert len(asks) == 1


async def test_the_task_after_which_recycling_is_asked_is_still_acked() -> None:
    asks: list[str] = []
    h = worker_with(Recycling(asks.append, max_tasks=1))
    delivery = await h.deliver(task_envelope("noop"))
    assert len(asks) == 1
    assert h.acks.acked == [delivery.tag]


async def test_memory_above_the_limit_after_a_task_asks_for_recycling_naming_that_task() -> None:
    asks: list[str] = []
    h = worker_with(Recycling(asks.append, max_memory_kib=1))
    delivery = await h.deliver(task_envelope("noop"))
    [why] = asks
    assert f"after noop[{delivery.envelope.message_id}]" in why
    assert why.endswith("(--max-memory-per-child 1)")


async def test_memory_under_the_limit_asks_nothing() -> None:
    asks: list[str] = []
    h = worker_with(Recycling(asks.append, max_memory_kib=resident_kib() + 1024 * 1024))
    await h.deliver(task_envelope("noop"))
    assert asks == []


async def test_the_memory_limit_is_looked_at_until_max_tasks_is_reached() -> None:
    asks: list[str] = []
    h = worker_with(Recycling(asks.append, max_tasks=100, max_memory_kib=1))
    await h.deliver(task_envelope("noop"))
    [why] = asks
    assert "--max-memory-per-child" in why


def test_resident_memory_grows_by_what_is_allocated_and_touched() -> None:
    before = resident_kib()
    block = os.urandom(64 * MIB)  # random bytes: every page written, so resident
    grown = resident_kib() - before
    del block
    assert grown >= 60 * 1024


def test_resident_memory_is_the_current_size_not_the_peak() -> None:
    block = os.urandom(64 * MIB)  # above malloc's mmap threshold: freed back to the kernel
    holding = resident_kib()
    del block
    assert holding - resident_kib() >= 60 * 1024
