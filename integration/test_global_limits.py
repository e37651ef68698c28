"""Global limits across real worker processes on a real broker (docs/limits.md).

The invariants are checked from what the tasks recorded (each run's start and end); how
fast the limits let tasks through is the benchmark's business (benchmarks/bench_limits.py),
never asserted here.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

import rabbitq
from integration.limits_support import (
    all_ran,
    most_at_once,
    most_starts_in_a_window,
    publish,
    runs,
    workers,
)
from integration.support import wait_for


@pytest.fixture
def send(broker_url: str, unique_name: str) -> Iterator[rabbitq.App]:
    app = rabbitq.App("throttled", broker=broker_url, default_queue=unique_name)
    yield app
    app.close()


def test_concurrency_is_never_exceeded_across_worker_processes(
    broker_url: str, unique_name: str, tmp_path: Path, send: rabbitq.App
) -> None:
    with workers(broker_url, unique_name, tmp_path, 3, concurrency=4):
        publish(send, "held", [(f"t{i}", 0.1) for i in range(30)])
        all_ran(tmp_path / "ran.txt", 30)
    found = runs(tmp_path / "ran.txt")
    assert Counter(run.label for run in found) == {f"t{i}": 1 for i in range(30)}
    assert most_at_once(found) <= 3


def test_a_killed_holder_s_slots_come_back_and_the_others_go_on(
    broker_url: str, unique_name: str, tmp_path: Path, send: rabbitq.App
) -> None:
    record = tmp_path / "ran.txt"
    with workers(broker_url, unique_name, tmp_path, 3, concurrency=4) as started:
        publish(send, "held", [(f"t{i}", 0.5) for i in range(24)])
        wait_for(lambda: any(run.end is None for run in runs(record)), 30)
        holder = next(run.pid for run in runs(record) if run.end is None)
        victim = next(worker for worker in started if worker.pid == holder)
        os.kill(victim.pid, signal.SIGKILL)
        killed_at = time.time()
        victim.process.wait(10)
        wait_for(
            lambda: (
                {run.label for run in runs(record) if run.end is not None}
                >= {f"t{i}" for i in range(24)}
            ),
            120,
            lambda: f"{len(runs(record))} runs recorded",
        )
    found = runs(record, ended_by={victim.pid: killed_at})
    assert most_at_once(found) <= 3
    after = [run for run in found if run.start > killed_at]
    assert after, "nothing ran after the kill"
    # The slot the killed process held came back: three ran at once again after it.
    assert most_at_once(after) == 3


def test_a_mutex_runs_one_task_per_key_at_a_time_and_every_task_runs(
    broker_url: str, unique_name: str, tmp_path: Path, send: rabbitq.App
) -> None:
    with workers(broker_url, unique_name, tmp_path, 2):
        publish(send, "per_user", [(f"u{i % 10}", f"{i}", 0.01) for i in range(200)])
        all_ran(tmp_path / "ran.txt", 200)
    found = runs(tmp_path / "ran.txt")
    assert len({run.label for run in found}) == 200
    assert len(found) == 200  # none twice
    for key in range(10):
        assert most_at_once(found, group=f"u{key}") == 1


def test_a_global_rate_is_never_exceeded_in_any_second(
    broker_url: str, unique_name: str, tmp_path: Path, send: rabbitq.App
) -> None:
    with workers(broker_url, unique_name, tmp_path, 2, RABBITQ_TEST_RATE="10/s"):
        publish(send, "rated", [(f"r{i}",) for i in range(25)])
        wait_for(lambda: len(runs(tmp_path / "ran.txt")) >= 25, 60)
    found = runs(tmp_path / "ran.txt")
    assert len(found) == 25
    assert most_starts_in_a_window(found, 1.0) <= 1 + 10  # burst + rate


def test_rate_limit_holds_each_process_to_its_own_rate(
    broker_url: str, unique_name: str, tmp_path: Path, send: rabbitq.App
) -> None:
    with workers(broker_url, unique_name, tmp_path, 1, RABBITQ_TEST_RATE="5/s"):
        publish(send, "locally_rated", [(f"r{i}",) for i in range(12)])
        wait_for(lambda: len(runs(tmp_path / "ran.txt")) >= 12, 60)
    assert most_starts_in_a_window(runs(tmp_path / "ran.txt"), 1.0) <= 1 + 5
