"""Health probes against real workers: ``rabbitq inspect ping``'s exit code,
``rabbitq status --check``, and ``rabbitq worker --health-port`` (docs/deploying.md).

Tests that need "no worker at all" run in a virtual host of their own, where no other
test's worker can answer. The health port is read over HTTP, as a kubelet would.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import rabbitq
from integration.apps import core_app
from integration.support import REPO_ROOT, WorkerProcess, ran_ids, running_worker, wait_for
from rabbitq.amqp.management import ManagementClient
from rabbitq.testing import LocalBroker, free_port

pytestmark = pytest.mark.timeout(180)


def rabbitq_cli(*args: str, broker: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rabbitq", *args, "--broker", broker],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def node_of(queue: str) -> str:
    return f"probe-{queue}@test"


def closed_port_url() -> str:
    return f"amqp://guest:guest@127.0.0.1:{free_port()}/"


@pytest.fixture
def empty_vhost(broker_url: str, management_url: str, unique_name: str) -> Iterator[str]:
    """The URL of a virtual host of the test's own: no worker runs there."""
    api = ManagementClient(management_url)
    vhost = f"probe-{unique_name}"
    api.call("PUT", f"/api/vhosts/{vhost}", {})
    user = urllib.parse.urlsplit(broker_url).username or "guest"
    api.call(
        "PUT", f"/api/permissions/{vhost}/{user}", {"configure": ".*", "write": ".*", "read": ".*"}
    )
    yield urllib.parse.urlsplit(broker_url)._replace(path=f"/{vhost}").geturl()
    api.call("DELETE", f"/api/vhosts/{vhost}")


def health(port: int, path: str = "/health") -> tuple[int, str]:
    """The status code and body the worker's health port answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode()
    except OSError as error:  # not listening (yet)
        return 0, str(error)


def wait_for_health(port: int, status: int, timeout: float, log: WorkerProcess) -> str:
    seen: list[tuple[int, str]] = []

    def answers() -> bool:
        seen.append(health(port))
        return seen[-1][0] == status

    wait_for(answers, timeout, lambda: f"last answer {seen[-1:]}; log:\n{log.log()[-3000:]}")
    return seen[-1][1]


def health_worker(
    broker_url: str, queue: str, tmp_path: Path, port: int, *extra: str
) -> WorkerProcess:
    return WorkerProcess(
        broker_url,
        queue,
        tmp_path / "ran.txt",
        tmp_path / f"worker-{port}.log",
        "--health-port",
        str(port),
        "--health-bind",
        "127.0.0.1",
        *extra,
    )


# -- rabbitq inspect ping ------------------------------------------------------------------


def test_inspect_ping_of_a_named_worker_that_answers_exits_0(
    broker_url: str, unique_name: str, tmp_path: Path
) -> None:
    with running_worker(broker_url, unique_name, tmp_path, "-n", node_of(unique_name)):
        done = rabbitq_cli(
            "inspect", "ping", "-d", node_of(unique_name), "--timeout", "5", broker=broker_url
        )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"->  {node_of(unique_name)}: OK" in done.stdout


def test_inspect_ping_exits_69_naming_a_named_node_that_does_not_answer(
    broker_url: str, unique_name: str, tmp_path: Path
) -> None:
    ghost = f"ghost-{unique_name}@test"
    with running_worker(broker_url, unique_name, tmp_path, "-n", node_of(unique_name)):
        started = time.monotonic()
        done = rabbitq_cli(
            "inspect", "ping", "-d", f"{node_of(unique_name)},{ghost}", "--timeout", "2",
            broker=broker_url,
        )  # fmt: skip
        waited = time.monotonic() - started
    assert done.returncode == 69, done.stdout + done.stderr
    assert f"->  {node_of(unique_name)}: OK" in done.stdout  # the other still answered
    assert f"no reply from {ghost} within 2s" in done.stderr
    assert waited >= 2


def test_inspect_ping_without_a_destination_exits_69_when_no_worker_answers(
    empty_vhost: str,
) -> None:
    done = rabbitq_cli("inspect", "ping", "--timeout", "2", broker=empty_vhost)
    assert done.returncode == 69
    assert "No nodes replied within time constraint" in done.stderr


def test_inspect_ping_exits_1_saying_why_when_the_broker_is_unreachable() -> None:
    done = rabbitq_cli(
        "inspect", "ping", "-d", "any@host", "--timeout", "5", broker=closed_port_url()
    )
    assert done.returncode == 1
    assert "cannot connect to the broker for remote control" in done.stderr
    assert "Connection refused" in done.stderr


# -- rabbitq status --check ----------------------------------------------------------------


def test_status_check_exits_0_when_a_worker_consumes_the_queue(
    broker_url: str, unique_name: str, tmp_path: Path
) -> None:
    with running_worker(broker_url, unique_name, tmp_path, "-n", node_of(unique_name)):
        done = rabbitq_cli("status", "--check", "--queue", unique_name, broker=broker_url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == f"OK: workers alive per queue: {unique_name}: 1\n"


def test_status_check_exits_1_when_no_worker_is_alive(empty_vhost: str) -> None:
    done = rabbitq_cli("status", "--check", broker=empty_vhost)
    assert done.returncode == 1
    assert done.stderr == "FAIL: 0 workers alive, 1 needed\n"


def test_status_check_exits_1_when_fewer_workers_than_asked_consume_the_queue(
    broker_url: str, unique_name: str, tmp_path: Path
) -> None:
    with running_worker(broker_url, unique_name, tmp_path, "-n", node_of(unique_name)):
        done = rabbitq_cli(
            "status", "--check", "--queue", unique_name, "--min-workers", "2", broker=broker_url
        )
    assert done.returncode == 1
    assert done.stderr == f"FAIL: {unique_name} has 1 worker alive consuming it, 2 needed\n"


def test_status_check_does_not_count_a_worker_that_stopped(
    broker_url: str, unique_name: str, tmp_path: Path
) -> None:
    with running_worker(broker_url, unique_name, tmp_path, "-n", node_of(unique_name)):
        pass  # stopped on leaving: its worker-offline is the last word
    done = rabbitq_cli("status", "--check", "--queue", unique_name, broker=broker_url)
    assert done.returncode == 1
    assert "has 0 workers alive consuming it" in done.stderr


def test_status_check_does_not_count_a_worker_without_heartbeat(
    broker_url: str, unique_name: str, tmp_path: Path
) -> None:
    with running_worker(broker_url, unique_name, tmp_path, "--without-heartbeat"):
        done = rabbitq_cli("status", "--check", "--queue", unique_name, broker=broker_url)
    assert done.returncode == 1
    assert "has 0 workers alive consuming it" in done.stderr


def test_status_check_exits_1_saying_why_when_the_broker_is_unreachable() -> None:
    started = time.monotonic()
    done = rabbitq_cli("status", "--check", broker=closed_port_url())
    assert done.returncode == 1
    assert done.stderr.startswith("FAIL: broker unreachable: cannot connect to the broker")
    assert time.monotonic() - started < 10  # a refused connection is the answer at once


# -- rabbitq worker --health-port ----------------------------------------------------------


def test_health_port_answers_200_on_health_and_root_while_the_worker_consumes(
    broker_url: str, unique_name: str, tmp_path: Path
) -> None:
    port = free_port()
    worker = health_worker(broker_url, unique_name, tmp_path, port)
    try:
        assert wait_for_health(port, 200, 30, worker) == f"ok: consuming {unique_name}\n"
        assert health(port, "/")[0] == 200
        assert health(port, "/metrics")[0] == 404
    finally:
        worker.stop()


@pytest.fixture
def unreachable_worker(tmp_path: Path, unique_name: str) -> Iterator[tuple[WorkerProcess, int]]:
    port = free_port()
    worker = health_worker(closed_port_url(), unique_name, tmp_path, port)
    yield worker, port
    worker.stop()


def test_health_port_answers_503_while_the_broker_cannot_be_reached(
    unreachable_worker: tuple[WorkerProcess, int],
) -> None:
    worker, port = unreachable_worker
    body = wait_for_health(port, 503, 30, worker)
    assert body == "unhealthy: not connected to the broker (connecting or reconnecting)\n"
    time.sleep(2)
    assert health(port)[0] == 503


@pytest.mark.slow
def test_health_port_answers_503_while_the_broker_is_down_and_200_once_it_is_back(
    restartable_broker: LocalBroker, unique_name: str, tmp_path: Path
) -> None:
    port = free_port()
    worker = health_worker(restartable_broker.url, unique_name, tmp_path, port)
    try:
        wait_for_health(port, 200, 30, worker)
        restartable_broker.kill()  # gone without a goodbye; its data stays for the start
        body = wait_for_health(port, 503, 30, worker)
        assert body == "unhealthy: not connected to the broker (connecting or reconnecting)\n"
        restartable_broker.start()
        assert wait_for_health(port, 200, 90, worker) == f"ok: consuming {unique_name}\n"
        assert worker.process.poll() is None
    finally:
        worker.stop()


def test_health_port_answers_503_while_a_stopping_worker_finishes_its_task(
    app: rabbitq.App, broker_url: str, unique_name: str, tmp_path: Path
) -> None:
    port = free_port()
    worker = health_worker(broker_url, unique_name, tmp_path, port)
    try:
        wait_for_health(port, 200, 30, worker)
        handle = core_app.slow_record.apply_async(("slow", 4.0), queue=unique_name)
        time.sleep(1.0)  # let it start
        worker.signal(signal.SIGTERM)
        assert wait_for_health(port, 503, 3, worker) == "unhealthy: stopping\n"
        # Once: a second SIGTERM would mean "exit now".
        assert worker.process.wait(30) == 0
        assert handle.id in ran_ids(tmp_path / "ran.txt")
    finally:
        worker.stop()


def child_pids(worker: WorkerProcess, count: int) -> list[int]:
    """The pids of the supervisor's children, as its log announces them, in order."""
    found: list[int] = []

    def announced() -> bool:
        found[:] = [
            int(pid)
            for pid in re.findall(r"started worker process \S+ \(pid (\d+)\)", worker.log())
        ]
        return len(found) >= count

    wait_for(announced, 30, lambda: worker.log()[-3000:])
    return found


def test_health_port_of_a_supervisor_answers_503_from_a_killed_child_until_it_is_replaced(
    broker_url: str, unique_name: str, tmp_path: Path
) -> None:
    port = free_port()
    worker = health_worker(broker_url, unique_name, tmp_path, port, "-P", "2")
    try:
        assert wait_for_health(port, 200, 60, worker) == "ok: all 2 processes consuming\n"
        first, _second = child_pids(worker, 2)
        os.kill(first, signal.SIGKILL)
        body = wait_for_health(port, 503, 5, worker)
        assert body.startswith("unhealthy: process 1: ")
        assert "process 2" not in body
        assert wait_for_health(port, 200, 60, worker) == "ok: all 2 processes consuming\n"
        assert len(child_pids(worker, 3)) == 3  # the supervisor started a third
    finally:
        worker.stop()
