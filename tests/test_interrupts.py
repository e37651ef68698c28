"""Interrupting a running task (``worker/interrupts.py`` through the executor), with real
threads and a real event loop: what the task sees, what its awaiter gets, and that a late
interrupt never reaches the next task."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any

import pytest

import rabbitq
from rabbitq.errors import SoftTimeLimitExceeded, TimeLimitExceeded
from rabbitq.task import TaskRequest
from rabbitq.worker.executor import Executor
from rabbitq.worker.interrupts import Abandoned, RunControl

app = rabbitq.App("interrupts", broker="amqp://guest:guest@127.0.0.1:1/")
seen: list[str] = []


def spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


@app.task(name="spins_and_cleans_up")
def spins_and_cleans_up(seconds: float) -> str:
    try:
        spin(seconds)
    except SoftTimeLimitExceeded:
        return "cleaned up"
    return "finished"


@app.task(name="spins")
def spins(seconds: float) -> str:
    spin(seconds)
    return "finished"


@app.task(name="awaits_and_cleans_up")
async def awaits_and_cleans_up(seconds: float) -> str:
    try:
        await asyncio.sleep(seconds)
    except SoftTimeLimitExceeded:
        return "cleaned up"
    return "finished"


@app.task(name="awaits")
async def awaits(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "finished"


@app.task(name="awaits_in_a_timeout")
async def awaits_in_a_timeout(seconds: float) -> str:
    with contextlib.suppress(SoftTimeLimitExceeded):
        await asyncio.sleep(seconds)
    # The task's own timeout still works after the soft limit was delivered.
    try:
        async with asyncio.timeout(0.05):
            await asyncio.sleep(5)
    except TimeoutError:
        return "own timeout fired"
    return "no timeout"


@app.task(name="blocks")
def blocks(event_name: str) -> str:
    events[event_name].wait(10)  # a lock wait: no bytecode runs, nothing is delivered
    return "woke"


@app.task(name="quick")
def quick(n: int) -> int:
    return n


events: dict[str, threading.Event] = {}


def request(name: str, *args: Any) -> TaskRequest:
    return TaskRequest(id=f"{name}-id", task=name, args=list(args), kwargs={})


async def run(executor: Executor, name: str, *args: Any, control: RunControl | None = None) -> Any:
    return await executor.run(app.tasks[name], request(name, *args), control)


def later(seconds: float, action: Any) -> None:
    asyncio.get_running_loop().call_later(seconds, action)


async def test_a_thread_task_receives_soft_time_limit_exceeded_and_can_clean_up() -> None:
    executor, control = Executor(2), RunControl(soft_limit=0.05)
    later(0.05, control.interrupt_soft)
    assert await run(executor, "spins_and_cleans_up", 5, control=control) == "cleaned up"
    executor.shutdown()


async def test_an_async_task_receives_soft_time_limit_exceeded_at_its_await() -> None:
    executor, control = Executor(2), RunControl(soft_limit=0.05)
    later(0.05, control.interrupt_soft)
    assert await run(executor, "awaits_and_cleans_up", 5, control=control) == "cleaned up"


async def test_a_delivered_soft_limit_leaves_the_tasks_own_asyncio_timeouts_working() -> None:
    executor, control = Executor(2), RunControl(soft_limit=0.05)
    later(0.05, control.interrupt_soft)
    assert await run(executor, "awaits_in_a_timeout", 5, control=control) == "own timeout fired"
    current = asyncio.current_task()
    assert current is not None and current.cancelling() == 0


async def test_an_uncaught_soft_limit_is_the_tasks_failure() -> None:
    executor, control = Executor(2), RunControl(soft_limit=0.05)
    later(0.05, control.interrupt_soft)
    with pytest.raises(SoftTimeLimitExceeded):
        await run(executor, "spins", 5, control=control)
    executor.shutdown()


async def test_a_thread_task_stopped_at_its_hard_limit_raises_time_limit_exceeded() -> None:
    executor, control = Executor(2), RunControl(hard_limit=0.05)
    later(0.05, control.interrupt_hard)
    with pytest.raises(TimeLimitExceeded, match=r"hard time limit \(0.05s\)"):
        await run(executor, "spins", 5, control=control)
    executor.shutdown()


async def test_an_async_task_stopped_at_its_hard_limit_raises_time_limit_exceeded() -> None:
    executor, control = Executor(2), RunControl(hard_limit=0.05)
    later(0.05, control.interrupt_hard)
    with pytest.raises(TimeLimitExceeded):
        await run(executor, "awaits", 5, control=control)
    current = asyncio.current_task()
    assert current is not None and current.cancelling() == 0  # ours, spent


async def test_an_interrupt_asked_before_the_thread_starts_is_raised_as_it_starts() -> None:
    executor, control = Executor(1), RunControl(hard_limit=1)
    control.interrupt_hard()
    with pytest.raises(TimeLimitExceeded):
        await run(executor, "quick", 1, control=control)
    executor.shutdown()


async def test_an_interrupt_after_the_run_finished_does_nothing() -> None:
    executor, control = Executor(1), RunControl(soft_limit=1, hard_limit=2)
    assert await run(executor, "quick", 1, control=control) == 1
    control.interrupt_soft()
    control.interrupt_hard()
    assert await run(executor, "quick", 2) == 2  # the same (only) thread, untouched
    executor.shutdown()


async def test_a_late_interrupt_never_reaches_the_threads_next_task() -> None:
    """Interrupts fired at random moments around the end of short runs: whatever lands,
    lands in the run it was meant for; the next run on the thread is never hit."""
    executor = Executor(1)
    failures = 0
    for n in range(300):
        control = RunControl(soft_limit=1)
        loop = asyncio.get_running_loop()
        loop.call_later((n % 7) * 0.0002, control.interrupt_soft)
        try:
            await run(executor, "spins", 0.0005, control=control)
        except SoftTimeLimitExceeded:
            failures += 1
        assert await run(executor, "quick", n) == n  # no control: must never be interrupted
    executor.shutdown()
    assert failures > 0  # the race was exercised


async def test_an_abandoned_thread_frees_its_awaiter_and_is_replaced() -> None:
    events["abandoned"] = threading.Event()
    executor, control = Executor(1), RunControl(hard_limit=0.05)
    stuck = asyncio.ensure_future(run(executor, "blocks", "abandoned", control=control))
    await asyncio.sleep(0.05)
    control.interrupt_hard()  # not delivered: the thread waits on a lock
    await asyncio.sleep(0.05)
    assert not stuck.done()
    control.abandon()
    with pytest.raises(Abandoned):
        await stuck
    # With one thread stuck, the pool of one still runs tasks: a fresh thread took its place.
    assert await asyncio.wait_for(run(executor, "quick", 7), 5) == 7
    events["abandoned"].set()  # the stuck one returns: its outcome goes nowhere
    await asyncio.sleep(0.05)
    assert await run(executor, "quick", 8) == 8
    executor.shutdown()


async def test_abandoning_a_finished_run_does_nothing() -> None:
    executor, control = Executor(1), RunControl(hard_limit=1)
    assert await run(executor, "quick", 3, control=control) == 3
    control.abandon()
    assert not control.abandoned
    executor.shutdown()


async def test_the_workers_own_cancellation_during_a_hard_stop_stays_a_cancellation() -> None:
    executor, control = Executor(1), RunControl(hard_limit=0.05)
    run_it = asyncio.ensure_future(run(executor, "awaits", 5, control=control))
    await asyncio.sleep(0.01)
    control.interrupt_hard()
    run_it.cancel()  # the worker cancels in the same turn
    with pytest.raises(asyncio.CancelledError):
        await run_it


async def test_the_workers_own_cancellation_during_a_soft_limit_is_not_translated() -> None:
    executor, control = Executor(1), RunControl(soft_limit=0.05)
    run_it = asyncio.ensure_future(run(executor, "awaits_and_cleans_up", 5, control=control))
    await asyncio.sleep(0.01)
    control.interrupt_soft()
    run_it.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run_it


@app.task(name="spins_and_hears_terminate")
def spins_and_hears_terminate(seconds: float) -> str:
    try:
        spin(seconds)
    except rabbitq.Terminated:
        seen.append("thread heard terminate")
        raise
    return "finished"


@app.task(name="awaits_and_hears_terminate")
async def awaits_and_hears_terminate(seconds: float) -> str:
    try:
        await asyncio.sleep(seconds)
    except rabbitq.Terminated:
        seen.append("coroutine heard terminate")
        raise
    return "finished"


async def test_a_thread_task_told_to_terminate_hears_terminated_inside_it() -> None:
    executor, control = Executor(2), RunControl()
    later(0.05, control.terminate)
    with pytest.raises(rabbitq.Terminated):
        await run(executor, "spins_and_hears_terminate", 5, control=control)
    assert "thread heard terminate" in seen
    executor.shutdown()


async def test_an_async_task_without_a_soft_limit_hears_terminated_at_its_await() -> None:
    executor, control = Executor(2), RunControl()
    later(0.05, control.terminate)
    with pytest.raises(rabbitq.Terminated):
        await run(executor, "awaits_and_hears_terminate", 5, control=control)
    assert "coroutine heard terminate" in seen
