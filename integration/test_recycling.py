"""Worker process recycling (``--max-tasks-per-child``, ``--max-memory-per-child``) with real
``rabbitq worker`` processes: the process is replaced, and no task is lost or run twice.

Which interpreter image ran a task is told by the token each run records (a new one in every
image, re-executed or spawned) beside the pid.
"""

from __future__ import annotations

import collections
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import rabbitq
from integration.apps import recycling_app
from integration.support import (
    REPO_ROOT,
    WorkerProcess,
    drain_queue,
    ran_ids,
    running_worker,
    wait_for,
)

# Recycling worker processes, not the broker's version: once, in the first pass.
pytestmark = [pytest.mark.timeout(240), pytest.mark.first_pass_only]

APP = "integration.apps.recycling_app"
RECYCLING = "recycling worker process"

# Until consumer.py's Pipeline(stopping=...) also answers True once ``recycling`` is set, the
# next prefetched delivery can take the slot the last task frees before stop() sets
# ``_stopping``: one more task runs in the image that asked to be replaced.


@dataclass(frozen=True)
class Run:
    task_id: str
    label: str
    token: str  # the interpreter image
    pid: int


def runs(record: Path) -> list[Run]:
    if not record.exists():
        return []
    lines = (line.split() for line in record.read_text().splitlines())
    return [Run(f[0], f[1], f[2], int(f[3])) for f in lines if len(f) == 4 and f[0] != "-"]


def tasks_per_image(record: Path) -> collections.Counter[str]:
    return collections.Counter(run.token for run in runs(record))


@pytest.fixture
def app(broker_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[rabbitq.App]:
    """The recycling app in this process, publishing to the session's broker."""
    monkeypatch.setattr(recycling_app.app, "broker_url", broker_url)
    recycling_app.app._declare_once.reset()
    yield recycling_app.app
    recycling_app.app.close()


@pytest.fixture
def queue() -> str:
    return f"recycle{uuid.uuid4().hex[:8]}"


def start_worker(broker_url: str, queue: str, tmp_path: Path, *args: str) -> WorkerProcess:
    worker = WorkerProcess(
        broker_url, queue, tmp_path / "ran.txt", tmp_path / "worker.log", *args, app=APP
    )
    worker.wait_until_consuming()
    return worker


def publish_records(queue: str, count: int) -> list[str]:
    return [recycling_app.records.apply_async((f"n{n}",), queue=queue).id for n in range(count)]


def wait_until_all_ran(record: Path, ids: list[str], worker: WorkerProcess) -> None:
    wait_for(
        lambda: all(ran_ids(record)[task_id] for task_id in ids),
        90,
        lambda: f"not every task ran; log:\n{worker.log()[-4000:]}",
    )


def test_a_single_process_re_executes_itself_after_max_tasks_keeping_its_pid(
    app: rabbitq.App, broker_url: str, queue: str, tmp_path: Path
) -> None:
    record = tmp_path / "ran.txt"
    with running_worker(
        broker_url, queue, tmp_path, "-c", "1", "--max-tasks-per-child", "3", app=APP
    ) as worker:
        ids = publish_records(queue, 10)
        wait_until_all_ran(record, ids, worker)
    assert worker.process.returncode == 0
    assert ran_ids(record) == {task_id: 1 for task_id in ids}
    images = tasks_per_image(record)
    assert max(images.values()) <= 3
    assert len(images) >= 4  # 10 tasks, 3 per image
    assert {run.pid for run in runs(record)} == {worker.pid}
    assert "(--max-tasks-per-child 3)" in worker.log()


def test_a_supervisor_replaces_its_recycled_children_with_new_processes(
    app: rabbitq.App, broker_url: str, queue: str, tmp_path: Path
) -> None:
    record = tmp_path / "ran.txt"
    with running_worker(
        broker_url, queue, tmp_path, "-P", "2", "-c", "1", "--max-tasks-per-child", "3", app=APP
    ) as worker:
        worker.wait_until_consuming(count=2)
        ids = publish_records(queue, 12)
        wait_until_all_ran(record, ids, worker)
    assert worker.process.returncode == 0
    assert ran_ids(record) == {task_id: 1 for task_id in ids}
    assert max(tasks_per_image(record).values()) <= 3
    pids = {run.pid for run in runs(record)}
    assert len(pids) >= 4  # 12 tasks, 3 per child: each image is a process of its own
    assert worker.pid not in pids
    assert "recycled; starting a fresh one" in worker.log()


def test_a_process_whose_memory_passes_the_limit_is_replaced_after_that_task_completes(
    app: rabbitq.App, broker_url: str, queue: str, tmp_path: Path
) -> None:
    record = tmp_path / "ran.txt"
    limit_kib = 128 * 1024  # an idle worker holds well under half of this
    with running_worker(
        broker_url, queue, tmp_path,
        "-c", "1", "--max-memory-per-child", str(limit_kib), app=APP,
    ) as worker:  # fmt: skip
        # 8 x 32 MiB kept: past the limit whatever the worker started with.
        ids = [recycling_app.leaks.apply_async((32,), queue=queue).id for _ in range(8)]
        wait_until_all_ran(record, ids, worker)
    assert worker.process.returncode == 0
    assert ran_ids(record) == {task_id: 1 for task_id in ids}
    first = re.search(r"it uses (\d+) KiB after \S+leaks\[([0-9a-f-]+)\]", worker.log())
    assert first is not None, worker.log()
    used_kib, crossing = int(first[1]), first[2]
    assert used_kib > limit_kib
    first_image = [run for run in runs(record) if run.token == runs(record)[0].token]
    assert first_image[-1].task_id == crossing  # it completed, and was that image's last
    assert len(tasks_per_image(record)) >= 2
    assert {run.pid for run in runs(record)} == {worker.pid}


def test_a_task_running_when_a_recycle_is_asked_finishes_and_is_acked_before_the_process_goes(
    app: rabbitq.App, broker_url: str, queue: str, tmp_path: Path
) -> None:
    record, gate = tmp_path / "ran.txt", tmp_path / "gate"
    with running_worker(
        broker_url, queue, tmp_path, "-c", "2", "--max-tasks-per-child", "2", app=APP
    ) as worker:
        long = recycling_app.waits_for_gate.apply_async((str(gate),), queue=queue)
        wait_for(lambda: ran_ids(record)[long.id] == 1, 30, worker.log)
        publish_records(queue, 2)  # the second to finish asks for the recycle
        wait_for(lambda: RECYCLING in worker.log(), 30, worker.log)
        gate.touch()
        after = recycling_app.records.apply_async(("after",), queue=queue)
        wait_for(lambda: ran_ids(record)[after.id] == 1, 60, worker.log)
    # Stopped gracefully: a redelivered copy of the long task would have run by now.
    assert worker.process.returncode == 0
    long_runs = [run for run in runs(record) if run.task_id == long.id]
    assert [run.label for run in long_runs] == ["started", "finished"]
    assert len({run.token for run in long_runs}) == 1
    [after_run] = [run for run in runs(record) if run.task_id == after.id]
    assert after_run.token != long_runs[0].token  # run by the fresh image
    assert drain_queue(broker_url, queue) == []


def test_sigterm_while_a_recycling_process_waits_for_its_running_task_stops_it_with_exit_0(
    app: rabbitq.App, broker_url: str, queue: str, tmp_path: Path
) -> None:
    record, gate = tmp_path / "ran.txt", tmp_path / "gate"
    worker = start_worker(broker_url, queue, tmp_path, "-c", "2", "--max-tasks-per-child", "1")
    try:
        long = recycling_app.waits_for_gate.apply_async((str(gate),), queue=queue)
        wait_for(lambda: ran_ids(record)[long.id] == 1, 30, worker.log)
        short = recycling_app.records.apply_async(("short",), queue=queue)
        wait_for(lambda: RECYCLING in worker.log(), 30, worker.log)
        waiting = publish_records(queue, 3)
        worker.signal(signal.SIGTERM)
        wait_for(lambda: "received SIGTERM" in worker.log(), 30, worker.log)
        gate.touch()
        # Waited for: stop() would send a second SIGTERM, which means "exit now".
        assert worker.process.wait(60) == 0
    finally:
        worker.stop()
    long_runs = [run.label for run in runs(record) if run.task_id == long.id]
    assert long_runs == ["started", "finished"]
    assert worker.log().count(f"consuming {queue}") == 1  # stopped, not re-executed
    # No task lost: each ran once or is still in the queue, never both.
    ran = ran_ids(record)
    queued = collections.Counter(props.message_id for props, _ in drain_queue(broker_url, queue))
    assert ran[short.id] == 1
    assert {task_id: ran[task_id] + queued[task_id] for task_id in waiting} == {
        task_id: 1 for task_id in waiting
    }


def test_sigterm_as_a_process_gives_way_to_its_fresh_image_stops_it_with_exit_0(
    app: rabbitq.App, broker_url: str, queue: str, tmp_path: Path
) -> None:
    """Nothing runs, so the signal lands while the old image closes or the new one starts,
    before it handles signals: it waits for the handlers instead of killing the process."""
    record = tmp_path / "ran.txt"
    worker = start_worker(broker_url, queue, tmp_path, "-c", "1", "--max-tasks-per-child", "1")
    try:
        only = recycling_app.records.apply_async(("only",), queue=queue)
        wait_for(lambda: RECYCLING in worker.log(), 30, worker.log)
        worker.signal(signal.SIGTERM)
        assert worker.process.wait(60) == 0
    finally:
        worker.stop()
    assert ran_ids(record)[only.id] == 1
    assert drain_queue(broker_url, queue) == []


@pytest.mark.parametrize("option", ["--max-tasks-per-child", "--max-memory-per-child"])
def test_a_limit_of_zero_is_refused_by_the_cli(option: str) -> None:
    refused = subprocess.run(
        [sys.executable, "-m", "rabbitq", "worker", "-A", APP, option, "0"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2
    assert f"Invalid value for '{option}': 0 is not in the range x>=1." in refused.stderr
