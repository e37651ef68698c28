"""What publishing declares, declared once: callers gathered on one loop share one declaration."""

from __future__ import annotations

import asyncio

import pytest

from rabbitq.amqp.declare_once import DeclareOnce
from rabbitq.topology import Topology


class _Settings:
    broker_url = "amqp://unused/"
    topology = Topology()
    declare_queues_on_publish = True
    publish_timeout = 1.0


def test_callers_gathered_at_once_share_one_declaration() -> None:
    once = DeclareOnce(_Settings())
    runs = 0

    async def declare() -> None:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.01)

    async def main() -> None:
        await asyncio.gather(*(once._once("queue:q", declare) for _ in range(50)))

    asyncio.run(main())
    assert runs == 1


def test_a_failed_declaration_reaches_every_waiting_caller_and_the_next_call_tries_again() -> None:
    once = DeclareOnce(_Settings())
    runs = 0

    async def declare() -> None:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.01)
        if runs == 1:
            raise ConnectionError("broker gone")

    async def main() -> list[object]:
        first = await asyncio.gather(
            *(once._once("queue:q", declare) for _ in range(3)), return_exceptions=True
        )
        await once._once("queue:q", declare)
        return first

    outcomes = asyncio.run(main())
    assert all(isinstance(outcome, ConnectionError) for outcome in outcomes)
    assert runs == 2


def test_a_cancelled_caller_does_not_cancel_the_declaration_others_wait_for() -> None:
    once = DeclareOnce(_Settings())
    finished = []

    async def declare() -> None:
        await asyncio.sleep(0.05)
        finished.append(True)

    async def main() -> None:
        impatient = asyncio.ensure_future(once._once("queue:q", declare))
        patient = asyncio.ensure_future(once._once("queue:q", declare))
        await asyncio.sleep(0.01)
        impatient.cancel()
        with pytest.raises(asyncio.CancelledError):
            await impatient
        await patient

    asyncio.run(main())
    assert finished == [True]
