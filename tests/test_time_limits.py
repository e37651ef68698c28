"""Time limits in the worker's pipeline (``worker/time_limits.py`` as middleware), with real
threads and an in-memory broker: where a message ends when its run passes a limit."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import threading
import time

import pytest

import rabbitq
from rabbitq import dead_letters
from rabbitq.delays import EXCHANGE_PREFIX, decode_delay
from rabbitq.errors import SoftTimeLimitExceeded, TimeLimitExceeded
from rabbitq.message import utcnow
from rabbitq.middleware import WorkerStats
from rabbitq.timeouts import STOPPED_HEADER
from rabbitq.worker.time_limits import HARD_GRACE, TimeLimits
from tests.pipeline_support import (
    FakeChannel,
    Harness,
    delivery_of,
    harness,
    make_app,
    task_envelope,
)

release = threading.Event()
ran: list[str] = []


def spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def limits_app(consumer_timeout: float | None = None) -> rabbitq.App:
    app = make_app(consumer_timeout=consumer_timeout)

    @app.task(name="spins", time_limit=0.05)
    def spins(seconds: float) -> None:
        spin(seconds)

    @app.task(name="cleans_up", soft_time_limit=0.05)
    def cleans_up(seconds: float) -> str:
        try:
            spin(seconds)
        except SoftTimeLimitExceeded:
            ran.append("cleaned up")
        return "done"

    @app.task(name="blocks", time_limit=0.05)
    def blocks() -> None:
        # A run that will not stop, as one inside a C call: it swallows the stop the worker
        # injects even if that lands before the wait begins (a busy machine starts the
        # thread late), so the worker must give the thread up.
        deadline = time.monotonic() + 10
        while not release.is_set() and time.monotonic() < deadline:
            try:
                release.wait(deadline - time.monotonic())
            except BaseException:  # the injected stop, ignored on purpose
                continue

    @app.task(name="retried", time_limit=0.05, autoretry_for=(TimeLimitExceeded,))
    def retried() -> None:
        spin(5)

    @app.task(name="free")
    def free(seconds: float) -> str:
        spin(seconds)
        ran.append("free")
        return "done"

    return app


class Recycles:
    def __init__(self) -> None:
        self.reasons: list[str] = []
        self.gone_by = utcnow() + dt.timedelta(seconds=30)

    def __call__(self, reason: str) -> dt.datetime:
        self.reasons.append(reason)
        return self.gone_by


def limited(app: rabbitq.App, recycle: Recycles | None = None, grace: float = 0.05) -> Harness:
    stack = app.middleware.added(TimeLimits(app.consumer_timeout, grace=grace), WorkerStats())
    return harness(app, middleware=stack, recycle=recycle)


async def test_a_task_that_cleans_up_at_its_soft_limit_succeeds() -> None:
    ran.clear()
    h = limited(limits_app())
    delivery = await h.deliver(task_envelope("cleans_up", 5))
    assert ran == ["cleaned up"] and h.acks.acked == [delivery.tag] and not h.dead()


async def test_a_task_stopped_at_its_hard_limit_is_dead_lettered_time_limit() -> None:
    h = limited(limits_app())
    delivery = await h.deliver(task_envelope("spins", 5))
    (dead,) = h.dead()
    assert dead.envelope.headers["rabbitq_reason"] == dead_letters.REASON_TIME_LIMIT
    assert h.acks.acked == [delivery.tag]


async def test_a_task_stopped_at_its_hard_limit_is_retried_when_autoretry_names_it() -> None:
    h = limited(limits_app())
    await h.deliver(task_envelope("retried"))
    (retry,) = h.publisher.published
    assert retry.exchange.startswith(EXCHANGE_PREFIX) and retry.envelope.headers["retries"] == 1


async def test_every_run_is_stopped_before_the_consumer_timeout() -> None:
    # A consumer timeout of 0.2 s: ceiling 0.18 s; the task itself has no limit.
    h = limited(limits_app(consumer_timeout=0.2))
    await h.deliver(task_envelope("free", 5))
    (dead,) = h.dead()
    assert dead.envelope.headers["rabbitq_reason"] == dead_letters.REASON_TIME_LIMIT


async def test_a_message_that_waited_too_long_for_a_slot_is_handed_back_unrun() -> None:
    ran.clear()
    h = limited(limits_app(consumer_timeout=100))
    delivery = dataclasses.replace(
        delivery_of(task_envelope("free", 0)), arrived=time.monotonic() - 95
    )
    await h.pipeline.handle(delivery)
    (copy,) = h.publisher.to("work")
    assert ran == [] and copy.exchange == "" and h.acks.acked == [delivery.tag]


async def test_a_thread_that_does_not_stop_is_parked_until_its_process_is_gone() -> None:
    release.clear()
    recycles = Recycles()
    h = limited(limits_app(), recycles)
    delivery = await h.deliver(task_envelope("blocks"))
    (parked,) = h.publisher.published
    assert parked.envelope.headers[STOPPED_HEADER].endswith("in test@host")
    assert parked.exchange.startswith(EXCHANGE_PREFIX)  # through the delay levels
    delayed = decode_delay(parked.routing_key)
    assert delayed is not None
    due = utcnow() + dt.timedelta(milliseconds=delayed[0])
    assert due > recycles.gone_by  # never back before the stuck thread can no longer run
    assert len(recycles.reasons) == 1 and "did not stop" in recycles.reasons[0]
    assert h.acks.acked == [delivery.tag] and not h.dead()
    release.set()


async def test_a_parked_copy_is_dead_lettered_time_limit_without_running() -> None:
    ran.clear()
    h = limited(limits_app())
    envelope = task_envelope("free", 0)
    envelope.headers[STOPPED_HEADER] = "0.05s in 1@host"
    await h.deliver(envelope)
    (dead,) = h.dead()
    assert ran == [] and dead.envelope.headers["rabbitq_reason"] == "time-limit"


async def test_a_retry_of_a_parked_copy_no_longer_carries_the_stopped_mark() -> None:
    h = limited(limits_app())
    envelope = task_envelope("retried")
    envelope.headers[STOPPED_HEADER] = "0.05s in 1@host"
    await h.deliver(envelope)
    (retry,) = h.publisher.published
    assert STOPPED_HEADER not in retry.envelope.headers


async def test_a_replayed_dead_letter_of_a_stopped_run_runs_again() -> None:
    dead = task_envelope("free", 0)
    dead.headers[STOPPED_HEADER] = "0.05s in 1@host"
    assert STOPPED_HEADER not in dead_letters.replay_envelope(dead).headers


async def test_a_run_that_ends_within_its_limits_is_not_interrupted_afterwards() -> None:
    ran.clear()
    h = limited(limits_app())
    await h.deliver(task_envelope("cleans_up", 0))
    await h.deliver(task_envelope("free", 0.2))  # runs past the first one's soft limit
    assert ran == ["free"] and len(h.acks.acked) == 2 and not h.dead()


async def test_runs_on_a_channel_the_broker_closed_are_stopped() -> None:
    h = limited(limits_app(consumer_timeout=1000))
    channel = FakeChannel()
    running = asyncio.ensure_future(h.deliver(task_envelope("free", 5), channel=channel))
    await asyncio.sleep(0.05)
    assert h.pipeline.interrupt_runs_on(channel) == 1
    channel.is_closed = True  # the broker has it back: nothing is settled
    await running
    assert h.publisher.published == [] and h.acks.acked == []


async def test_a_parked_copy_recounted_after_a_redelivery_stays_concluded() -> None:
    h = limited(limits_app())
    envelope = task_envelope("free", 0)
    envelope.headers[STOPPED_HEADER] = "0.05s in 1@host"
    await h.deliver(envelope, redelivered=True)  # classic queue: counted on a fresh copy
    (copy,) = h.publisher.to("work")
    assert copy.envelope.headers[STOPPED_HEADER] == "0.05s in 1@host"


async def test_a_park_the_broker_never_confirms_ends_the_process_at_once() -> None:
    release.clear()
    channel = FakeChannel()

    def refuse(_published: object) -> BaseException:
        channel.is_closed = True  # the connection is gone: the broker has the message back
        return ConnectionError("connection lost")

    h = limited(limits_app(), Recycles())
    h.publisher.refuse = refuse
    ended: list[bool] = []
    h.pipeline.end_now = lambda: ended.append(True)
    await h.deliver(task_envelope("blocks"), channel=channel)
    assert ended == [True] and h.acks.acked == []
    release.set()


async def test_a_thread_whose_run_the_worker_cancelled_and_that_does_not_stop_recycles() -> None:
    release.clear()
    recycles = Recycles()
    app = limits_app(consumer_timeout=1000)
    h = limited(app, recycles)
    running = asyncio.ensure_future(h.deliver(task_envelope("free", 0)))
    await running  # warm the thread pool
    stuck = asyncio.ensure_future(h.deliver(task_envelope("blocks")))
    await asyncio.sleep(0.01)
    stuck.cancel()  # as aiormq does when the channel closes
    with pytest.raises(asyncio.CancelledError):
        await stuck
    await asyncio.sleep(HARD_GRACE + 0.2)
    assert len(recycles.reasons) == 1 and "after its channel closed" in recycles.reasons[0]
    release.set()
