"""The stub worker runs the worker's own pipeline on the in-memory broker, and ``join()`` says
plainly when it cannot drain."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

import rabbitq
from rabbitq.errors import ConfigurationError, RabbitqError
from rabbitq.testing import StubBroker, StubWorker
from rabbitq.worker import coordinator, pipeline


@pytest.fixture
def broker() -> Iterator[StubBroker]:
    stub = StubBroker()
    yield stub
    stub.close()


@pytest.fixture
def app(broker: StubBroker) -> rabbitq.App:
    return rabbitq.App("stubbed", broker=broker.url, result_backend="rpc://")


def test_a_worker_on_an_amqp_url_is_refused_pointing_to_the_real_worker() -> None:
    app = rabbitq.App("real", broker="amqp://guest:secret@rabbit.example:5672/")
    with pytest.raises(ConfigurationError, match=r"rabbitq\.testing\.Worker") as refused:
        StubWorker(app)
    assert "secret" not in str(refused.value)


def test_a_concurrency_below_one_is_refused(app: rabbitq.App) -> None:
    with pytest.raises(ConfigurationError, match="at least 1"):
        StubWorker(app, concurrency=0)


def test_join_before_start_says_how_to_start(app: rabbitq.App) -> None:
    with pytest.raises(RabbitqError, match="not started"):
        StubWorker(app).join()


def test_a_task_runs_and_its_result_comes_back(app: rabbitq.App) -> None:
    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    with StubWorker(app) as worker:
        result = add.delay(2, 3)
        worker.join()
    assert result.get(timeout=1) == 5


def test_without_advancing_the_clock_a_countdown_waits_for_advance(
    app: rabbitq.App, broker: StubBroker
) -> None:
    ran: list[float] = []

    @app.task
    def remind() -> None:
        ran.append(broker.time())

    with StubWorker(app) as worker:
        sent_at = broker.time()
        remind.apply_async(countdown=3600)
        worker.join(advance_clock=False)
        assert ran == [] and broker.delayed() == 1
        broker.advance(3600)
        worker.join(advance_clock=False)
    assert len(ran) == 1 and ran[0] >= sent_at + 3600


def test_advancing_the_clock_never_runs_a_countdown_early(
    app: rabbitq.App, broker: StubBroker
) -> None:
    ran: list[tuple[str, float]] = []

    @app.task
    def remind(name: str) -> None:
        ran.append((name, broker.time()))

    with StubWorker(app) as worker:
        sent_at = broker.time()
        remind.apply_async(("later",), countdown=7200)
        remind.apply_async(("sooner",), countdown=60)
        worker.join()
    assert [name for name, _ in ran] == ["sooner", "later"]
    assert ran[0][1] >= sent_at + 60 and ran[1][1] >= sent_at + 7200


def test_join_s_timeout_names_what_is_left(app: rabbitq.App) -> None:
    release = threading.Event()

    @app.task
    def stuck() -> None:
        release.wait(10)

    with StubWorker(app) as worker:
        stuck.delay()
        with pytest.raises(TimeoutError, match="1 running, 1 unacked"):
            worker.join(timeout=0.3)
        release.set()
        worker.join()


def test_join_from_inside_a_task_of_the_same_worker_is_refused(app: rabbitq.App) -> None:
    refused: list[str] = []
    workers: list[StubWorker] = []

    @app.task
    def impatient() -> None:
        try:
            workers[0].join()
        except RabbitqError as exc:
            refused.append(str(exc))

    with StubWorker(app) as worker:
        workers.append(worker)
        impatient.delay()
        worker.join()
    assert refused and "never return" in refused[0]


def test_a_worker_given_queues_leaves_the_others_alone(
    app: rabbitq.App, broker: StubBroker
) -> None:
    @app.task(queue="emails")
    def send() -> None: ...

    @app.task(queue="reports")
    def build() -> None: ...

    with StubWorker(app, ["emails"]) as worker:
        send.delay()
        build.delay()
        worker.join()
    assert broker.messages("emails") == []
    assert len(broker.messages("reports")) == 1


def test_a_defect_in_the_pipeline_is_raised_at_join_and_its_message_runs_again(
    app: rabbitq.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[bool] = []

    @app.task
    def job() -> None:
        ran.append(True)

    real = pipeline.decide_arrival
    calls: list[int] = []

    def broken_once(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug in the pure core")
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "decide_arrival", broken_once)
    monkeypatch.setattr("rabbitq.testing.stub_worker.DEFECT_PAUSE", 0.0)
    with StubWorker(app) as worker:
        job.delay()
        with pytest.raises(RabbitqError, match="a bug in the pure core"):
            worker.join()
        worker.join()  # given back, redelivered, and run this time
    assert ran == [True]


def test_a_defect_in_the_chord_coordinator_is_raised_at_join(
    app: rabbitq.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    @app.task
    def part(x: int) -> int:
        return x

    @app.task
    def total(xs: list[int]) -> int:
        return sum(xs)

    async def broken(self: Any, message: Any) -> None:
        raise RuntimeError("tally bug")

    monkeypatch.setattr(coordinator.ChordCoordinator, "receive", broken)
    with StubWorker(app) as worker:
        rabbitq.chord([part.s(1), part.s(2)])(total.s())
        with pytest.raises(RabbitqError, match="tally bug"):
            worker.join(timeout=5)


def test_stopping_lets_the_running_task_finish_and_hands_the_waiting_one_back(
    app: rabbitq.App, broker: StubBroker
) -> None:
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    @app.task(queue="slow")
    def waits(name: str) -> None:
        started.set()
        release.wait(10)
        ran.append(name)

    worker = StubWorker(app, ["slow"], concurrency=1).start()
    waits.delay("first")
    started.wait(5)
    waits.delay("second")  # taken into the worker's prefetch, waiting for the one slot
    while broker.messages("slow"):
        broker.wait(0.01)
    stopping = threading.Thread(target=worker.stop)
    stopping.start()
    while not worker._stopping:  # the stop is under way before the first task ends
        broker.wait(0.01)
    release.set()
    stopping.join(10)
    assert ran == ["first"]
    assert len(broker.messages("slow")) == 1 and broker.unacked() == 0
    with StubWorker(app, ["slow"]) as again:
        again.join()
    assert ran == ["first", "second"]


def test_the_app_s_sent_events_are_kept_for_the_test_to_read(broker: StubBroker) -> None:
    app = rabbitq.App("stubbed", broker=broker.url, task_send_sent_event=True)

    @app.task
    def job() -> None: ...

    job.delay()
    assert [key for key, _ in broker.events] == ["task.sent"]


def test_tasks_with_limits_run_unlimited_with_a_warning_naming_them(
    app: rabbitq.App, caplog: pytest.LogCaptureFixture
) -> None:
    @app.task(limits=rabbitq.Concurrency("reports", 1), rate_limit="1/h")
    def report() -> str:
        return "done"

    with StubWorker(app) as worker:
        first, second = report.delay(), report.delay()
        worker.join()
    assert first.get(timeout=1) == second.get(timeout=1) == "done"
    assert f"runs {report.name} without their limits" in caplog.text
