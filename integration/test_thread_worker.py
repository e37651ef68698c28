"""rabbitq.testing.Worker: the real consumer in a thread of the test, on a real broker."""

from __future__ import annotations

import threading

import pytest

import rabbitq
from rabbitq.errors import RabbitqError
from rabbitq.testing import Worker, free_port


def test_join_waits_for_a_countdown_on_the_real_delay_levels(
    broker_url: str, unique_name: str
) -> None:
    app = rabbitq.App("threaded", broker=broker_url, default_queue=unique_name)
    ran: list[int] = []

    @app.task
    def remember(x: int) -> None:
        ran.append(x)

    with Worker(app, [unique_name]) as worker:
        remember.apply_async((1,), countdown=1)
        worker.join()
    app.close()
    assert ran == [1]


def test_join_s_timeout_names_what_is_running(broker_url: str, unique_name: str) -> None:
    app = rabbitq.App("threaded", broker=broker_url, default_queue=unique_name)
    release = threading.Event()

    @app.task
    def stuck() -> None:
        release.wait(30)

    with Worker(app, [unique_name]) as worker:
        stuck.delay()
        with pytest.raises(TimeoutError, match="1 running"):
            worker.join(timeout=1)
        release.set()
        worker.join()
    app.close()


def test_a_worker_that_cannot_reach_its_broker_fails_to_start_saying_so() -> None:
    app = rabbitq.App("threaded", broker=f"amqp://guest:guest@127.0.0.1:{free_port()}/")
    with pytest.raises(RabbitqError, match="did not start"):
        Worker(app, start_timeout=1).start()


def test_join_before_start_says_how_to_start(broker_url: str) -> None:
    app = rabbitq.App("threaded", broker=broker_url)
    with pytest.raises(RabbitqError, match="not started"):
        Worker(app).join()


def test_join_is_not_held_up_by_other_apps_countdowns(broker_url: str, unique_name: str) -> None:
    other = rabbitq.App("someone-else", broker=broker_url, default_queue=f"{unique_name}-other")

    @other.task
    def later() -> None: ...

    later.apply_async(countdown=3600)  # in the delay levels for an hour, not ours to wait for
    other.close()
    app = rabbitq.App("threaded", broker=broker_url, default_queue=unique_name)
    ran: list[int] = []

    @app.task
    def now(x: int) -> None:
        ran.append(x)

    with Worker(app, [unique_name]) as worker:
        now.delay(1)
        worker.join(timeout=20)
    app.close()
    assert ran == [1]


def test_join_waits_for_a_retry_the_worker_scheduled(broker_url: str, unique_name: str) -> None:
    app = rabbitq.App("threaded", broker=broker_url, default_queue=unique_name)
    attempts: list[int] = []

    @app.task(bind=True, max_retries=1)
    def flaky(self: rabbitq.Task[..., None]) -> None:
        attempts.append(self.request.retries)
        if len(attempts) == 1:
            raise self.retry(countdown=1)

    with Worker(app, [unique_name]) as worker:
        flaky.delay()
        worker.join()
    app.close()
    assert attempts == [0, 1]
