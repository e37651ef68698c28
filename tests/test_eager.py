"""Eager mode: every delay() runs through the worker's pipeline before it returns."""

from __future__ import annotations

import asyncio
import time

import pytest

import rabbitq
from rabbitq.errors import RabbitqError, TaskError, UnroutableError
from rabbitq.testing import eager, make_eager, undo_eager

BROKER = "amqp://guest:guest@127.0.0.1:1/"  # nothing listens there: eager never goes out


@pytest.fixture
def app() -> rabbitq.App:
    return rabbitq.App("eager", broker=BROKER)


def test_a_result_is_ready_when_delay_returns(app: rabbitq.App) -> None:
    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    with eager(app):
        result = add.delay(2, 3)
        assert result.ready()
        assert result.get(timeout=1) == 5


def test_a_failure_raises_at_get_and_ends_in_the_dead_letter_queue(app: rabbitq.App) -> None:
    @app.task
    def fail() -> None:
        raise ValueError("no such customer")

    with eager(app) as broker:
        result = fail.delay()
        with pytest.raises(TaskError, match="no such customer"):
            result.get(timeout=1)
        [dead] = broker.dead_letters(app.default_queue)
    assert dead.headers["rabbitq_reason"] == "task-failed"


def test_retries_are_retried_on_the_stub_s_clock_not_the_wall_s(app: rabbitq.App) -> None:
    attempts: list[int] = []

    @app.task(bind=True, max_retries=3)
    def flaky(self: rabbitq.Task[..., str]) -> str:
        attempts.append(self.request.retries)
        if len(attempts) < 3:
            raise self.retry(countdown=3600)
        return "ok"

    with eager(app) as broker:
        result = flaky.delay()
        assert result.get(timeout=1) == "ok"
        assert broker.time() - time.time() >= 2 * 3600 - 60  # two hours passed, virtually
    assert attempts == [0, 1, 2]


def test_a_task_s_own_delay_runs_before_the_outer_delay_returns(app: rabbitq.App) -> None:
    sent: list[str] = []

    @app.task
    def welcome(to: str) -> None:
        sent.append(to)

    @app.task
    def sign_up(to: str) -> None:
        welcome.delay(to)

    with eager(app):
        sign_up.delay("ada@example.com")
        assert sent == ["ada@example.com"]


def test_a_chain_completes_before_it_returns(app: rabbitq.App) -> None:
    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    with eager(app):
        result = (add.s(1, 2) | add.s(10))()
        assert result.get(timeout=1) == 13


def test_adelay_is_eager_too(app: rabbitq.App) -> None:
    @app.task
    def double(x: int) -> int:
        return 2 * x

    async def caller() -> int:
        result = await double.adelay(21)
        assert result.ready()
        return result.get(timeout=1)

    with eager(app):
        assert asyncio.run(caller()) == 42


def test_arguments_that_cannot_be_serialized_raise_at_the_caller(app: rabbitq.App) -> None:
    @app.task
    def store(thing: object) -> None: ...

    with eager(app), pytest.raises(RabbitqError, match="cannot serialize arguments"):
        store.delay(object())


def test_the_app_s_broker_and_backend_come_back_after(app: rabbitq.App) -> None:
    with eager(app):
        assert app.broker_url.startswith("memory://")
        assert app.result_backend_url == "rpc://"
    assert app.broker_url == BROKER
    assert app.result_backend_url is None
    assert app.eager is None


def test_make_eager_lasts_until_undo_eager(app: rabbitq.App) -> None:
    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    broker = make_eager(app)
    try:
        assert make_eager(app) is broker  # once is enough; twice is the same broker
        with eager(app) as inner:  # a test's own eager() inside a whole run's
            assert inner is broker
        assert add.delay(1, 1).get(timeout=1) == 2  # the inner one did not undo it
    finally:
        undo_eager(app)
    assert app.broker_url == BROKER and app.eager is None


def test_a_routing_key_no_queue_is_bound_to_raises_at_the_caller(app: rabbitq.App) -> None:
    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    with eager(app), pytest.raises(UnroutableError):
        add.apply_async((1, 2), routing_key="nowhere.at.all")
