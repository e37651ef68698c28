"""What docs/deploying.md says of stopping a worker under a service manager: who must get the
SIGTERM, and what ``--shutdown-timeout`` bounds.

A worker here runs in a session of its own, so that a test can signal its whole process
group as systemd's default ``KillMode=control-group`` does (every process of the unit).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import rabbitq
from integration.apps import core_app
from integration.support import REPO_ROOT, consumer_count, queue_depth, ran_labels, wait_for
from rabbitq.testing import die_with_parent

# Signals and process groups, not the broker: once, in the first pass.
pytestmark = [pytest.mark.timeout(120), pytest.mark.first_pass_only]


class SessionWorker:
    """``rabbitq worker`` as the leader of a process group of its own."""

    def __init__(self, broker_url: str, queue: str, tmp_path: Path, *extra: str) -> None:
        self.record = tmp_path / "ran.txt"
        self.log_file = tmp_path / "worker.log"
        self._log = open(self.log_file, "ab")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rabbitq", "worker", "-A", "integration.apps.core_app",
             "-Q", queue, *extra],
            cwd=REPO_ROOT,
            env={**os.environ, "RABBITQ_BROKER_URL": broker_url,
                 "RABBITQ_TEST_RECORD": str(self.record)},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )  # fmt: skip

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self._log.close()


@pytest.fixture
def session_worker(
    broker_url: str, unique_name: str, tmp_path: Path
) -> Iterator[Callable[..., SessionWorker]]:
    started: list[SessionWorker] = []

    def start(*extra: str) -> SessionWorker:
        worker = SessionWorker(broker_url, unique_name, tmp_path, *extra)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.close()


def start_slow_tasks(
    app: rabbitq.App, broker_url: str, queue: str, worker: SessionWorker, count: int, seconds: float
) -> None:
    wait_for(lambda: consumer_count(broker_url, queue) >= count, 30, worker.log)
    for n in range(count):
        core_app.slow_record.apply_async((f"slow-{n}", seconds), queue=queue)
    wait_for(lambda: queue_depth(broker_url, queue) == 0, 10, worker.log)  # all delivered
    time.sleep(1.0)  # and started


def test_a_sigterm_to_the_supervisor_alone_lets_every_child_finish_its_task(
    app: rabbitq.App,
    broker_url: str,
    unique_name: str,
    session_worker: Callable[..., SessionWorker],
) -> None:
    worker = session_worker("-P", "2", "-c", "1", "--prefetch", "1")
    start_slow_tasks(app, broker_url, unique_name, worker, 2, 3.0)
    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(30) == 0
    assert sorted(ran_labels(worker.record)) == ["slow-0", "slow-1"]
    assert "second signal" not in worker.log()


def test_a_sigterm_to_the_whole_process_group_is_a_second_signal_to_each_child(
    app: rabbitq.App,
    broker_url: str,
    unique_name: str,
    session_worker: Callable[..., SessionWorker],
) -> None:
    worker = session_worker("-P", "2", "-c", "1", "--prefetch", "1")
    start_slow_tasks(app, broker_url, unique_name, worker, 2, 5.0)
    os.killpg(worker.process.pid, signal.SIGTERM)  # as KillMode=control-group does
    worker.process.wait(30)
    assert worker.log().count("second signal: exiting now") == 2
    assert ran_labels(worker.record) == []  # cut short...
    wait_for(lambda: queue_depth(broker_url, unique_name) == 2, 10)  # ...and redelivered


def test_shutdown_timeout_bounds_the_wait_for_a_running_task_which_the_broker_redelivers(
    app: rabbitq.App,
    broker_url: str,
    unique_name: str,
    session_worker: Callable[..., SessionWorker],
) -> None:
    worker = session_worker("-c", "1", "--shutdown-timeout", "2")
    start_slow_tasks(app, broker_url, unique_name, worker, 1, 30.0)
    signalled = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(20) == 0
    assert 2.0 <= time.monotonic() - signalled < 10.0
    assert "1 task(s) still running at shutdown; the broker will redeliver them" in worker.log()
    wait_for(lambda: queue_depth(broker_url, unique_name) == 1, 10)
    assert ran_labels(worker.record) == []
