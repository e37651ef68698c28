"""One behaviour suite, run on both brokers: the in-memory ``StubBroker`` with a
``StubWorker``, and a real RabbitMQ with a real worker (``rabbitq.testing.Worker``).

Each spec runs twice, and the two runs must agree: this is what keeps the stub from drifting
away from what rabbitq does on RabbitMQ. Users' tests on the stub stand on it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

import rabbitq
from integration.support import drain_queue
from rabbitq import chain, chord, group
from rabbitq.errors import TaskError, UnroutableError
from rabbitq.testing import StubBroker, StubWorker, Worker

SHORT = 0.2  # seconds: a countdown the real broker waits out (the stub jumps over it)


@dataclass
class Tasks:
    add: Any
    total: Any
    fails: Any
    flaky: Any
    record: Any
    autoretried: Any
    calls: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Setup:
    app: rabbitq.App
    queue: str
    worker: StubWorker | Worker
    tasks: Tasks
    stub: StubBroker | None

    def dead_letters(self) -> list[dict[str, Any]]:
        """The headers of each dead letter of the test's queue, oldest first."""
        self.worker.join()
        if self.stub is not None:
            return [envelope.headers for envelope in self.stub.dead_letters(self.queue)]
        drained = drain_queue(self.app.broker_url, f"{self.queue}.dead")
        return [dict(properties.headers or {}) for properties, _body in drained]


def register(app: rabbitq.App) -> Tasks:
    calls: list[str] = []
    lock = threading.Lock()

    def note(what: str) -> None:
        with lock:
            calls.append(what)

    @app.task(name="both.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="both.total")
    def total(numbers: list[int]) -> int:
        return sum(numbers)

    @app.task(name="both.fails")
    def fails() -> None:
        note("fails")
        raise ValueError("always")

    @app.task(name="both.flaky", bind=True, max_retries=5)
    def flaky(self: Any) -> str:
        note("flaky")
        if self.request.retries < 2:
            raise self.retry(countdown=SHORT)
        return f"ok after {self.request.retries} retries"

    @app.task(name="both.record")
    def record(label: str) -> str:
        note(label)
        return label

    @app.task(name="both.autoretried", autoretry_for=(KeyError,), max_retries=1,
              default_retry_delay=SHORT)  # fmt: skip
    def autoretried() -> None:
        note("autoretried")
        raise KeyError("missing")

    return Tasks(add, total, fails, flaky, record, autoretried, calls, lock)


@pytest.fixture(params=["memory", "rabbitmq"])
def on(request: pytest.FixtureRequest, unique_name: str) -> Iterator[Setup]:
    if request.param == "memory":
        stub = StubBroker()
        app = rabbitq.App("both", broker=stub.url, default_queue=unique_name,
                          result_backend="rpc://")  # fmt: skip
        tasks = register(app)
        with StubWorker(app, [unique_name]) as worker:
            yield Setup(app, unique_name, worker, tasks, stub)
        stub.close()
        return
    broker_url = request.getfixturevalue("broker_url")
    app = rabbitq.App("both", broker=broker_url, default_queue=unique_name,
                      result_backend="rpc://")  # fmt: skip
    tasks = register(app)
    with Worker(app, [unique_name]) as real_worker:
        yield Setup(app, unique_name, real_worker, tasks, None)
    app.close()


def test_a_task_s_result_comes_back(on: Setup) -> None:
    assert on.tasks.add.delay(2, 3).get(timeout=10) == 5


def test_a_chain_passes_each_result_on_and_its_result_knows_its_parents(on: Setup) -> None:
    add = on.tasks.add
    result = chain(add.s(1, 2), add.s(10), add.s(100))()
    assert result.get(timeout=10) == 113
    assert result.parent.get(timeout=10) == 13
    assert result.parent.parent.get(timeout=10) == 3


def test_a_group_returns_its_results_in_order(on: Setup) -> None:
    assert group(on.tasks.add.s(i, i) for i in range(6))().get(timeout=10) == [0, 2, 4, 6, 8, 10]


def test_a_chord_s_body_receives_every_part_s_result(on: Setup) -> None:
    parts = [on.tasks.add.s(i, 1) for i in range(5)]
    assert chord(parts, on.tasks.total.s())().get(timeout=10) == 15


def test_a_retried_task_runs_again_until_it_succeeds(on: Setup) -> None:
    assert on.tasks.flaky.delay().get(timeout=10) == "ok after 2 retries"
    assert on.tasks.calls.count("flaky") == 3


def test_a_failed_task_raises_at_get_and_ends_in_its_dead_letter_queue(on: Setup) -> None:
    result = on.tasks.fails.delay()
    with pytest.raises(TaskError, match="always"):
        result.get(timeout=10)
    [dead] = on.dead_letters()
    assert dead["rabbitq_reason"] == "task-failed"
    assert dead["rabbitq_exception_type"] == "ValueError"
    assert on.tasks.calls.count("fails") == 1


def test_autoretry_for_retries_the_named_error_then_dead_letters_it(on: Setup) -> None:
    on.tasks.autoretried.delay()
    [dead] = on.dead_letters()
    assert dead["rabbitq_reason"] == "retries-exhausted"
    assert on.tasks.calls.count("autoretried") == 2


def test_an_unknown_task_is_dead_lettered_with_its_reason(on: Setup) -> None:
    on.app.send_task("both.nobody_has_this", args=[1])
    [dead] = on.dead_letters()
    assert dead["rabbitq_reason"] == "unknown-task"


def test_arguments_that_do_not_fit_are_dead_lettered_unrun(on: Setup) -> None:
    on.app.send_task("both.add", args=[1])
    [dead] = on.dead_letters()
    assert dead["rabbitq_reason"] == "bad-arguments"


def test_a_message_that_arrives_after_it_expired_is_dead_lettered_unrun(on: Setup) -> None:
    on.tasks.record.apply_async(("late",), countdown=SHORT * 2, expires=SHORT)
    [dead] = on.dead_letters()
    assert dead["rabbitq_reason"] == "expired"
    assert "late" not in on.tasks.calls


def test_a_countdown_task_runs_after_one_sent_later_without_one(on: Setup) -> None:
    on.tasks.record.apply_async(("later",), countdown=SHORT)
    on.tasks.record.delay("now")
    on.worker.join()
    assert on.tasks.calls == ["now", "later"]


def test_a_routing_key_under_the_queue_s_name_reaches_it(on: Setup) -> None:
    result = on.tasks.add.apply_async((4, 4), routing_key=f"{on.queue}.priority.high")
    assert result.get(timeout=10) == 8


def test_a_routing_key_no_queue_is_bound_to_raises_at_the_caller(on: Setup) -> None:
    on.app.ensure_queue(on.queue)
    with pytest.raises(UnroutableError):
        on.tasks.add.apply_async((1, 1), routing_key="nobody.listens.here", retry=False)


def test_a_failed_task_s_errback_runs(on: Setup) -> None:
    record = on.tasks.record
    on.tasks.fails.apply_async(link_error=record.si("errback ran"))
    on.worker.join()
    assert "errback ran" in on.tasks.calls
