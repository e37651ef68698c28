"""Time limits in a real worker (``worker/time_limits.py``): a soft limit is heard by the task,
a hard one stops it and dead-letters it ``time-limit``, and a thread that cannot be stopped
(blocked in C) is abandoned: its process is replaced and its message concluded only once
that process is gone, so the task never runs twice at once.

Every task in ``apps/limits_app.py`` records "<task id> <label> <process token>"; the token
changes with every interpreter image, so a test can tell which process ran what.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from integration.apps import limits_app
from integration.support import (
    WorkerProcess,
    drain_queue,
    queue_depth,
    running_worker,
    wait_for,
)

# Time limits enforced in the worker, not the broker's version: once, in the first pass.
pytestmark = [pytest.mark.timeout(180), pytest.mark.first_pass_only]

LIMITS_APP = "integration.apps.limits_app"


@dataclass(frozen=True)
class Line:
    """One line of the record file: "<task id> <label> <token> [<pid> <epoch seconds>]"."""

    task_id: str
    label: str
    token: str
    rest: tuple[str, ...]

    @property
    def pid(self) -> int:
        return int(self.rest[0])

    @property
    def at(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(float(self.rest[1]), dt.UTC)


@dataclass
class Limits:
    """The limits app, a queue of this test's own, and what the workers on it did."""

    broker_url: str
    queue: str
    tmp_path: Path

    @property
    def record(self) -> Path:
        return self.tmp_path / "ran.txt"

    def worker(
        self, *extra: str, env: dict[str, str] | None = None
    ) -> AbstractContextManager[WorkerProcess]:
        return running_worker(
            self.broker_url,
            self.queue,
            self.tmp_path,
            *extra,
            env={"RABBITQ_RESULT_BACKEND": "rpc://", **(env or {})},
            app=LIMITS_APP,
        )

    def send(self, task: Any, *args: Any, **options: Any) -> str:
        return str(task.apply_async(args, queue=self.queue, **options).id)

    def lines(self) -> list[Line]:
        if not self.record.exists():
            return []
        parsed = []
        for text in self.record.read_text().splitlines():
            task_id, label, token, *rest = text.split()
            parsed.append(Line(task_id, label, token, tuple(rest)))
        return parsed

    def labels(self, task_id: str) -> list[str]:
        return [line.label for line in self.lines() if line.task_id == task_id]

    def line(self, task_id: str, label: str) -> Line:
        return next(line for line in self.lines() if (line.task_id, line.label) == (task_id, label))

    def wait_for_label(self, task_id: str, label: str, worker: WorkerProcess) -> Line:
        wait_for(
            lambda: label in self.labels(task_id),
            60,
            lambda: f"no {label!r} for {task_id}; log:\n{worker.log()[-4000:]}",
        )
        return self.line(task_id, label)

    def lifecycle(self, event: str) -> list[Line]:
        return [line for line in self.lines() if (line.task_id, line.label) == ("-", event)]

    def dead_letters(self) -> dict[str, dict[str, Any]]:
        """Take the dead letters out of <queue>.dead: their headers, by task id."""
        dead = drain_queue(self.broker_url, f"{self.queue}.dead")
        return {_id_of(properties): properties.headers or {} for properties, _ in dead}

    def wait_for_dead_letter(self, task_id: str, worker: WorkerProcess) -> dict[str, Any]:
        """The headers of ``task_id``'s dead letter, once it is in <queue>.dead."""
        found: dict[str, dict[str, Any]] = {}

        def arrived() -> bool:
            found.update(self.dead_letters())
            return task_id in found

        wait_for(arrived, 60, lambda: f"no dead letter for {task_id}; log:\n{worker.log()[-4000:]}")
        return found[task_id]

    def settled(self) -> bool:
        """Nothing left in the queue once its workers have stopped: every delivery was acked."""
        return queue_depth(self.broker_url, self.queue) == 0


def _id_of(properties: Any) -> str:
    """A task's id: Celery's producers set no message_id, only the ``id`` header."""
    return str((properties.headers or {}).get("id") or properties.message_id)


@pytest.fixture
def limits(
    broker_url: str, unique_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Limits]:
    app = limits_app.app
    monkeypatch.setattr(app, "broker_url", broker_url)
    monkeypatch.setattr(app, "result_backend_url", "rpc://")
    monkeypatch.setattr(app, "_backend", None)
    app._declare_once.reset()
    yield Limits(broker_url, f"limits_{unique_name}", tmp_path)
    app.close()
    app._publisher = None


# -- soft limits: the task hears it and its result stands --------------------------------------


def test_a_thread_past_its_soft_limit_cleans_up_and_its_result_stands(limits: Limits) -> None:
    with limits.worker():
        task_id = limits.send(limits_app.spins_past_soft_limit, 30)
        result = limits_app.app.AsyncResult(task_id)
        assert result.get(timeout=60) == "cleaned up"
    assert limits.labels(task_id) == ["cleaned-up"]
    assert limits.settled()
    assert limits.dead_letters() == {}


def test_a_coroutine_past_its_soft_limit_cleans_up_and_its_result_stands(limits: Limits) -> None:
    with limits.worker():
        task_id = limits.send(limits_app.awaits_past_soft_limit, 30)
        result = limits_app.app.AsyncResult(task_id)
        assert result.get(timeout=60) == "cleaned up"
    assert limits.labels(task_id) == ["cleaned-up"]
    assert limits.settled()
    assert limits.dead_letters() == {}


# -- hard limits: stopped, dead-lettered time-limit --------------------------------------------


def test_a_thread_busy_in_python_past_its_hard_limit_is_stopped_and_dead_lettered(
    limits: Limits,
) -> None:
    with limits.worker() as worker:
        task_id = limits.send(limits_app.spins_past_hard_limit, 30)
        dead = limits.wait_for_dead_letter(task_id, worker)
        assert worker.process.poll() is None  # stopped without replacing the process
        assert "recycling" not in worker.log()
    assert dead["rabbitq_reason"] == "time-limit"
    assert limits.labels(task_id) == ["started"]  # ran once, never finished
    assert limits.settled()


def test_a_coroutine_past_its_hard_limit_is_stopped_and_dead_lettered(limits: Limits) -> None:
    with limits.worker() as worker:
        task_id = limits.send(limits_app.awaits_past_hard_limit, 30)
        dead = limits.wait_for_dead_letter(task_id, worker)
    assert dead["rabbitq_reason"] == "time-limit"
    assert limits.labels(task_id) == ["started"]
    assert limits.settled()


def test_autoretry_for_time_limit_exceeded_retries_a_run_stopped_at_its_hard_limit(
    limits: Limits,
) -> None:
    with limits.worker() as worker:
        task_id = limits.send(limits_app.retried_after_hard_limit, 30)
        dead = limits.wait_for_dead_letter(task_id, worker)
    assert limits.labels(task_id) == ["started", "started"]  # max_retries=1: two runs
    assert dead["rabbitq_reason"] == "retries-exhausted"
    assert limits.settled()


# -- per-call limits, and Celery's ---------------------------------------------------------------


def test_a_per_call_time_limit_stops_a_task_that_has_none(limits: Limits) -> None:
    with limits.worker() as worker:
        task_id = limits.send(limits_app.spins, 30, time_limit=1)
        dead = limits.wait_for_dead_letter(task_id, worker)
    assert dead["rabbitq_reason"] == "time-limit"
    assert limits.labels(task_id) == ["started"]


def test_a_per_call_time_limit_replaces_the_tasks_own(limits: Limits) -> None:
    with limits.worker():
        # Its own limit is 1s; this call allows 30s, so the 2s of work finish.
        task_id = limits.send(limits_app.spins_past_hard_limit, 2, time_limit=30)
        assert limits_app.app.AsyncResult(task_id).get(timeout=60) is None
    assert limits.labels(task_id) == ["started", "finished"]
    assert limits.dead_letters() == {}


def test_a_celery_producers_time_limit_stops_the_task_on_a_rabbitq_worker(
    limits: Limits,
) -> None:
    pytest.importorskip("celery")
    from integration.apps.interop_celery import make_app

    producer = make_app(limits.queue, None)
    producer.conf.broker_url = limits.broker_url
    try:
        with limits.worker() as worker:
            # Celery writes the header as [hard, soft]: this is a hard limit of 1s.
            sent = producer.send_task(
                limits_app.spins.name, (30,), time_limit=1, queue=limits.queue
            )
            dead = limits.wait_for_dead_letter(sent.id, worker)
    finally:
        producer.close()
    assert dead["rabbitq_reason"] == "time-limit"
    assert limits.labels(sent.id) == ["started"]


# -- a thread that cannot be stopped: abandoned, its process replaced --------------------------


@pytest.mark.slow
def test_a_thread_blocked_in_c_past_its_hard_limit_is_dead_lettered_after_its_process_re_executed(
    limits: Limits,
) -> None:
    env = {"RABBITQ_TEST_RECORD_LIFECYCLE": "1"}
    with limits.worker("-c", "1", "--shutdown-timeout", "3", env=env) as worker:
        # It would wake after 8s: before its message can come back (abandoned 2s after the
        # 1s limit, parked until 3s + 5s later), had its thread lived on.
        stuck = limits.send(limits_app.blocks_in_c, 8)
        first = limits.wait_for_label(stuck, "started", worker)
        after = limits.send(limits_app.records, "after")  # the one slot is taken
        ran_after = limits.wait_for_label(after, "after", worker)
        dead = limits.wait_for_dead_letter(stuck, worker)
        assert worker.process.poll() is None
    first_image, second_image = limits.lifecycle("ready")
    assert first_image.token == first.token
    # The same process re-executed itself: same pid, a new interpreter image.
    assert second_image.pid == first_image.pid == worker.pid
    assert second_image.token != first_image.token
    assert "recycling" in worker.log()
    # The next task was not held up by the stuck one: it ran (in the fresh image).
    assert ran_after.token == second_image.token
    assert limits.labels(after) == ["after"]
    assert limits.labels(stuck) == ["started"]  # ran once, and never woke
    assert dead["rabbitq_reason"] == "time-limit"
    # Concluded only once the stuck run's image was gone.
    assert dt.datetime.fromisoformat(dead["rabbitq_dead_at"]) > second_image.at
    assert limits.settled()


@pytest.mark.slow
def test_a_supervised_process_with_a_stuck_thread_is_replaced_before_the_task_runs_again(
    limits: Limits,
) -> None:
    env = {"RABBITQ_TEST_RECORD_LIFECYCLE": "1"}
    with limits.worker("-P", "2", "-c", "1", "--shutdown-timeout", "3", env=env) as worker:
        worker.wait_until_consuming(count=2)
        task_id = limits.send(limits_app.blocks_then_retried, 8)  # stuck each time it runs
        dead = limits.wait_for_dead_letter(task_id, worker)
    lines = limits.lines()
    runs = [line for line in lines if line.task_id == task_id]
    assert [run.label for run in runs] == ["started", "started"]  # and never woke
    first, second = runs
    first_stopped = next(line for line in limits.lifecycle("stopped") if line.token == first.token)
    # The stuck run's process was replaced by a fresh one (a new pid)...
    started_with = {line.pid for line in lines[: lines.index(first)] if line.label == "ready"}
    fresh = next(line for line in lines[lines.index(first_stopped) :] if line.label == "ready")
    assert fresh.pid not in started_with
    # ...and the task ran again only after that process had stopped, in another one.
    assert lines.index(first_stopped) < lines.index(second)
    assert second.token != first.token
    assert dead["rabbitq_reason"] == "retries-exhausted"
    assert limits.settled()


# -- the broker's consumer_timeout ---------------------------------------------------------------


def test_a_worker_refuses_to_start_when_a_task_limit_exceeds_the_consumer_timeout(
    limits: Limits,
) -> None:
    worker = WorkerProcess(
        limits.broker_url,
        limits.queue,
        limits.record,
        limits.tmp_path / "worker.log",
        env={"RABBITQ_TEST_CONSUMER_TIMEOUT": "1"},  # its tasks have limits of 1s
        app=LIMITS_APP,
    )
    try:
        assert worker.process.wait(60) != 0
    finally:
        worker.stop()
    log = worker.log()
    assert "integration.apps.limits_app.spins_past_hard_limit (time_limit=1s)" in log
    assert "consumer_timeout" in log
    assert "Traceback" not in log
