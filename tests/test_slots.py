"""A worker process runs at most ``concurrency`` tasks at once: ``Slots``."""

from __future__ import annotations

import asyncio

import pytest

from rabbitq.errors import ConfigurationError
from rabbitq.worker.slots import Slots


def test_free_slots_are_taken_without_waiting() -> None:
    async def scenario() -> int:
        slots = Slots(2)
        await slots.take()
        await slots.take()
        return slots.free

    assert asyncio.run(scenario()) == 0


def test_a_release_passes_the_slot_to_the_oldest_waiter() -> None:
    async def scenario() -> list[str]:
        slots, order = Slots(1), []
        await slots.take()

        async def wait(name: str) -> None:
            await slots.take()
            order.append(name)

        first = asyncio.create_task(wait("first"))
        await asyncio.sleep(0)
        second = asyncio.create_task(wait("second"))
        await asyncio.sleep(0)
        slots.release()
        await first
        assert not second.done() and slots.free == 0
        slots.release()
        await second
        return order

    assert asyncio.run(scenario()) == ["first", "second"]


def test_a_waiter_cancelled_before_its_turn_takes_no_slot() -> None:
    async def scenario() -> int:
        slots = Slots(1)
        await slots.take()
        waiter = asyncio.create_task(slots.take())
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        slots.release()
        return slots.free

    assert asyncio.run(scenario()) == 1


def test_a_waiter_cancelled_after_being_handed_a_slot_passes_it_on() -> None:
    async def scenario() -> tuple[int, bool]:
        slots = Slots(1)
        await slots.take()
        handed = asyncio.create_task(slots.take())
        await asyncio.sleep(0)
        behind = asyncio.create_task(slots.take())
        await asyncio.sleep(0)
        slots.release()  # the slot is handed to ``handed``...
        handed.cancel()  # ...which is cancelled before it resumes
        with pytest.raises(asyncio.CancelledError):
            await handed
        await asyncio.wait_for(behind, 1)
        return slots.free, behind.done()

    assert asyncio.run(scenario()) == (0, True)


def test_a_concurrency_of_zero_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="at least 1"):
        Slots(0)
