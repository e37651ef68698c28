"""The broker's consumer_timeout: the worker ends every run inside it, and copes when it does not.

RabbitMQ takes a delivery back when it stays unacked longer than its consumer_timeout (3.10:
it closes the channel; 4.3+ quorum queues: it cancels the consumer). These tests run a broker
of their own whose timeout is short and checked every second (the default check runs once a
minute), so a test sees the broker act within seconds.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pika
import pytest

from integration.apps import limits_app
from integration.support import (
    WorkerProcess,
    consumer_count,
    drain_queue,
    queue_depth,
    running_worker,
    wait_for,
)
from rabbitq.amqp.management import ManagementClient
from rabbitq.errors import ConfigurationError
from rabbitq.task import Task
from rabbitq.testing import LocalBroker, find_rabbitmq_server

# Nodes of its own (3.10): skipped in the RabbitMQ 4.0 pass (conftest.py).
pytestmark = [pytest.mark.timeout(180), pytest.mark.own_broker]

BROKER_TIMEOUT = 8  # seconds: the broker's consumer_timeout
TICK_MS = 1000  # how often the broker checks it
# Longer than the broker lets a delivery stay unacked, with room to spare.
OUTLIVES = BROKER_TIMEOUT * 4
# Long enough for the worker to stop a run at its ceiling and for the broker to act.
WAIT = BROKER_TIMEOUT * 4


@pytest.fixture(scope="module")
def broker() -> Iterator[LocalBroker]:
    """Not the session's broker: this one needs a short consumer_timeout, checked often.
    Skipped when the suite runs against a given broker ($RABBITQ_TEST_URL, e.g. the
    RabbitMQ 4.0 pass): this one would be the local 3.10 again."""
    if os.environ.get("RABBITQ_TEST_URL"):
        pytest.skip("needs a broker of its own with a short consumer_timeout")
    try:
        find_rabbitmq_server()
    except ConfigurationError as exc:
        pytest.skip(str(exc))
    with LocalBroker(
        management=True,
        consumer_timeout_ms=BROKER_TIMEOUT * 1000,
        channel_tick_interval_ms=TICK_MS,
    ) as broker:
        yield broker


@dataclasses.dataclass
class Limits:
    """The limits app publishing to ``broker``, a queue of the test's own, and its worker."""

    broker: LocalBroker
    queue: str
    tmp_path: Path

    def worker(
        self,
        *extra: str,
        consumer_timeout: str = str(BROKER_TIMEOUT),
        queues: str | None = None,
    ) -> AbstractContextManager[WorkerProcess]:
        """``consumer_timeout``: the worker's App(consumer_timeout=), "none" for None."""
        return running_worker(
            self.broker.url,
            queues or self.queue,
            self.tmp_path,
            "--no-chords",
            *extra,
            env={"RABBITQ_TEST_CONSUMER_TIMEOUT": consumer_timeout},
            app="integration.apps.limits_app",
        )

    def publish(self, task: Task, *args: Any) -> str:
        return task.apply_async(args, queue=self.queue).id

    def labels(self, task_id: str) -> list[str]:
        """What the runs of ``task_id`` recorded, in order (``started``, ``finished``...)."""
        record = self.tmp_path / "ran.txt"
        lines = record.read_text().splitlines() if record.exists() else []
        return [line.split()[1] for line in lines if line.split()[0] == task_id]

    def dead_reasons(self) -> list[str]:
        return [p.headers["rabbitq_reason"] for p, _ in drain_queue(self.broker.url, self.dead)]

    @property
    def dead(self) -> str:
        return f"{self.queue}.dead"

    def settled(self) -> bool:
        """Nothing left in the queue, delivered or not: the broker has nothing to time out."""
        return _ready_and_unacked(self.broker, self.queue) == (0, 0)


@pytest.fixture
def limits(
    broker: LocalBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Limits]:
    monkeypatch.setattr(limits_app.app, "broker_url", broker.url)
    limits_app.app._declare_once.reset()
    yield Limits(broker, f"ct{uuid.uuid4().hex[:10]}", tmp_path)
    limits_app.app.close()


def _ready_and_unacked(broker: LocalBroker, queue: str) -> tuple[int, int]:
    # rabbitmqctl, not the management API: its queue statistics are seconds old.
    rows = broker.rabbitmqctl(
        "list_queues", "name", "messages_ready", "messages_unacknowledged", "--no-table-headers"
    )
    for row in rows.splitlines():
        fields = row.split()
        if fields and fields[0] == queue:
            return int(fields[1]), int(fields[2])
    raise AssertionError(f"queue {queue} not found in:\n{rows}")


# -- the worker keeps inside the broker's timeout ---------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "task", [limits_app.spins, limits_app.async_sleeps], ids=["thread", "coroutine"]
)
def test_a_task_that_would_outlive_the_brokers_consumer_timeout_is_stopped_before_it(
    limits: Limits, task: Task
) -> None:
    with limits.worker() as worker:
        task_id = limits.publish(task, OUTLIVES)
        wait_for(lambda: queue_depth(limits.broker.url, limits.dead) == 1, WAIT, worker.log)
        # Once nothing is delivered, the broker has nothing left to take back.
        wait_for(limits.settled, WAIT, worker.log)
    assert limits.dead_reasons() == ["time-limit"]
    assert limits.labels(task_id) == ["started"]  # once, and not to its end
    assert "closed the channel" not in worker.log()


@pytest.mark.slow
def test_a_prefetched_message_left_too_little_of_its_window_is_handed_back_not_started(
    limits: Limits,
) -> None:
    with limits.worker("--concurrency", "1", "--prefetch", "4") as worker:
        # Both arrive at once; the second waits for the one slot while the first runs to
        # the ceiling, which leaves the second almost none of its window: started then, it
        # would be stopped at once. Handed back, it comes again with a whole window.
        first = limits.publish(limits_app.async_sleeps, OUTLIVES)
        second = limits.publish(limits_app.async_sleeps, 0.5)
        wait_for(lambda: "finished" in limits.labels(second), WAIT, worker.log)
        wait_for(limits.settled, WAIT, worker.log)
    assert f"message {second} waited for a slot" in worker.log()
    assert limits.labels(second) == ["started", "finished"]
    assert limits.labels(first) == ["started"]
    assert limits.dead_reasons() == ["time-limit"]  # the first's


# -- a worker that claims more time than the broker gives -------------------------------------


@dataclasses.dataclass
class Misconfigured:
    """What happened when a worker with App(consumer_timeout=None) ran a task past the
    broker's consumer_timeout, then a second task."""

    log: str
    long_run: list[str]  # what the long task's runs recorded, in order
    later_run: list[str]
    dead_reasons: list[str]
    ready_and_unacked: tuple[int, int]


@pytest.fixture(scope="class")
def misconfigured(
    broker: LocalBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Misconfigured]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(limits_app.app, "broker_url", broker.url)
        limits_app.app._declare_once.reset()
        limits = Limits(broker, f"ct{uuid.uuid4().hex[:10]}", tmp_path_factory.mktemp("mis"))
        try:
            with limits.worker(consumer_timeout="none") as worker:
                long_id = limits.publish(limits_app.sleeps_the_first_time, OUTLIVES)
                wait_for(lambda: "again" in limits.labels(long_id), WAIT, worker.log)
                later_id = limits.publish(limits_app.records, "later")
                wait_for(lambda: limits.labels(later_id) != [], WAIT, worker.log)
                wait_for(limits.settled, WAIT, worker.log)
            yield Misconfigured(
                log=worker.log(),
                long_run=limits.labels(long_id),
                later_run=limits.labels(later_id),
                dead_reasons=limits.dead_reasons(),
                ready_and_unacked=_ready_and_unacked(broker, limits.queue),
            )
        finally:
            limits_app.app.close()


@pytest.mark.slow
class TestAWorkerAllowingMoreTimeThanTheBroker:
    def test_logs_an_error_naming_consumer_timeout(self, misconfigured: Misconfigured) -> None:
        assert "a delivery stayed unacked past the broker's consumer_timeout" in misconfigured.log
        assert "App(consumer_timeout=None) must not exceed" in misconfigured.log

    def test_stops_the_run_whose_message_the_broker_took_back(
        self, misconfigured: Misconfigured
    ) -> None:
        assert "stopped" in misconfigured.long_run and "finished" not in misconfigured.long_run

    def test_runs_the_redelivered_message_only_after_the_first_run_stopped(
        self, misconfigured: Misconfigured
    ) -> None:
        assert misconfigured.long_run == ["started", "stopped", "again"]

    def test_acks_the_message_after_its_redelivered_run(self, misconfigured: Misconfigured) -> None:
        assert misconfigured.ready_and_unacked == (0, 0) and misconfigured.dead_reasons == []

    def test_keeps_consuming(self, misconfigured: Misconfigured) -> None:
        assert misconfigured.later_run == ["later"]


@pytest.mark.slow
@pytest.mark.parametrize("consumer_timeout", ["none", str(BROKER_TIMEOUT * 4)])
def test_a_thread_run_whose_message_the_broker_took_back_is_stopped_before_it_runs_again(
    limits: Limits, consumer_timeout: str
) -> None:
    with limits.worker("--shutdown-timeout", "1", consumer_timeout=consumer_timeout) as worker:
        task_id = limits.publish(limits_app.spins_the_first_time, BROKER_TIMEOUT * 2)
        wait_for(lambda: "again" in limits.labels(task_id), WAIT, worker.log)
        wait_for(limits.settled, WAIT, worker.log)
    assert limits.labels(task_id) == ["started", "stopped", "again"]


# -- the broker cancels the consumer ----------------------------------------------------------


def test_a_worker_whose_queue_is_deleted_declares_it_again_and_consumes_from_it(
    limits: Limits,
) -> None:
    with limits.worker() as worker:
        connection = pika.BlockingConnection(pika.URLParameters(limits.broker.url))
        try:
            connection.channel().queue_delete(limits.queue)  # the broker cancels consumers
        finally:
            connection.close()
        wait_for(lambda: f"consuming {limits.queue} again" in worker.log(), WAIT, worker.log)
        worker.wait_until_consuming()
        task_id = limits.publish(limits_app.records, "after")
        wait_for(lambda: limits.labels(task_id) == ["after"], WAIT, worker.log)
    assert "the broker cancelled this worker's consumer" in worker.log()


# -- the consumer timeout asked for per consumer ----------------------------------------------


def test_only_a_quorum_queue_consumer_asks_for_the_apps_consumer_timeout(
    limits: Limits,
) -> None:
    quorum, classic = f"{limits.queue}q", f"{limits.queue}c"
    routing = limits.tmp_path / "routing.yaml"
    routing.write_text(f"queues:\n  {quorum}:\n    type: quorum\n  {classic}:\n    type: classic\n")
    assert limits.broker.management_url is not None
    api = ManagementClient(limits.broker.management_url)
    with limits.worker("--routing", str(routing), queues=f"{quorum},{classic}") as worker:
        wait_for(lambda: consumer_count(limits.broker.url, classic) == 1, WAIT, worker.log)
        wait_for(
            lambda: {quorum, classic} <= {c["queue"]["name"] for c in api.get("/api/consumers")},
            WAIT,
        )
        arguments = {c["queue"]["name"]: c["arguments"] for c in api.get("/api/consumers")}
    assert arguments[quorum] == {"x-consumer-timeout": BROKER_TIMEOUT * 1000}
    assert arguments[classic] == {}
