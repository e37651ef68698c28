"""A worker's life at its edges: started before the broker, and stopped with work queued."""

from __future__ import annotations

import collections
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pika
import pika.exceptions
import pytest

from integration.apps import faults_app
from integration.support import WorkerProcess, ran_ids, wait_for
from rabbitq.redelivery import REDELIVERY_COUNT_HEADER
from rabbitq.testing import LocalBroker

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def broker_not_started_yet() -> Iterator[LocalBroker]:
    broker = LocalBroker()
    yield broker
    broker.stop()


@pytest.mark.slow
def test_a_worker_started_before_the_broker_waits_for_it_and_then_runs_tasks(
    broker_not_started_yet: LocalBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = broker_not_started_yet
    queue = f"early{uuid.uuid4().hex[:8]}"
    record = tmp_path / "ran.txt"
    worker = WorkerProcess(
        broker.url, queue, record, tmp_path / "worker.log", app="integration.apps.faults_app"
    )
    try:
        wait_for(lambda: "broker not reachable" in worker.log(), 30, worker.log)
        wait_for(lambda: "retrying in" in worker.log().split("broker not reachable", 2)[-1], 30)
        assert worker.process.poll() is None  # still waiting, not exited
        assert "guest:***@" in worker.log()  # the password is not logged
        broker.start()
        worker.wait_until_consuming(timeout=60)
        monkeypatch.setenv("RABBITQ_TEST_RECORD", str(record))
        monkeypatch.setattr(faults_app.app, "broker_url", broker.url)
        faults_app.app._declare_once.reset()
        result = faults_app.ok.apply_async(("after the wait",), queue=queue)
        wait_for(lambda: ran_ids(record)[result.id] >= 1, 30, worker.log)
    finally:
        assert worker.stop() == 0
        faults_app.app.close()


def test_tasks_handed_back_at_shutdown_do_not_count_as_redeliveries(
    broker_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = f"handback{uuid.uuid4().hex[:8]}"
    record = tmp_path / "ran.txt"
    monkeypatch.setenv("RABBITQ_TEST_RECORD", str(record))
    monkeypatch.setattr(faults_app.app, "broker_url", broker_url)
    faults_app.app._declare_once.reset()
    worker = WorkerProcess(
        broker_url, queue, record, tmp_path / "worker.log",
        "--concurrency", "1", "--prefetch", "10",
        app="integration.apps.faults_app",
    )  # fmt: skip
    try:
        worker.wait_until_consuming()
        slow = faults_app.slow.apply_async(("slow", 2.0), queue=queue)
        waiting = [faults_app.ok.apply_async((f"w{n}",), queue=queue) for n in range(5)]
        # The slow one runs (its prerun hook fired); the others wait for the one slot.
        wait_for(lambda: f"{slow.id} hook:task_prerun" in _text(record), 30, worker.log)
        worker.signal(signal.SIGTERM)
        # Waited for: stop() would send a second SIGTERM, which means "exit now".
        assert worker.process.wait(60) == 0
    finally:
        worker.stop()
        faults_app.app.close()
    ran = _runs(record)
    assert ran[slow.id] == 1  # it finished
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        channel = connection.channel()
        back: dict[str, tuple[bool, dict[str, object]]] = {}
        while True:
            method, properties, _body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                break
            back[properties.message_id] = (method.redelivered, properties.headers or {})
    finally:
        connection.close()
    assert set(back) == {result.id for result in waiting}
    for redelivered, headers in back.values():
        assert not redelivered
        assert REDELIVERY_COUNT_HEADER not in headers
    assert all(ran[result.id] == 0 for result in waiting)


def _runs(record: Path) -> collections.Counter[str]:
    """Runs per task id, leaving out the lines the app's hooks write."""
    lines = _text(record).splitlines()
    return collections.Counter(line.split(" ", 1)[0] for line in lines if " hook:" not in line)


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def test_worker_ready_and_worker_shutdown_are_sent_in_a_real_worker(
    broker_url: str, tmp_path: Path
) -> None:
    queue = f"signals{uuid.uuid4().hex[:8]}"
    record = tmp_path / "ran.txt"
    worker = WorkerProcess(
        broker_url, queue, record, tmp_path / "worker.log", app="integration.apps.faults_app"
    )
    worker.wait_until_consuming()
    wait_for(lambda: "- hook:worker_ready" in _text(record), 30, worker.log)
    assert worker.stop() == 0
    assert _text(record).splitlines()[-1] == "- hook:worker_shutdown"


def test_a_process_start_hook_that_raises_stops_the_worker_process(
    broker_url: str, tmp_path: Path
) -> None:
    worker = WorkerProcess(
        broker_url,
        f"refused{uuid.uuid4().hex[:8]}",
        tmp_path / "ran.txt",
        tmp_path / "worker.log",
        env={"RABBITQ_TEST_FAIL_PROCESS_START": "1"},
        app="integration.apps.faults_app",
    )
    assert worker.process.wait(60) != 0
    assert "process_start refused" in worker.log()


@pytest.mark.slow
def test_sigterm_ends_the_wait_for_a_broker_that_never_comes(
    broker_not_started_yet: LocalBroker, tmp_path: Path
) -> None:
    worker = WorkerProcess(
        broker_not_started_yet.url,
        "never",
        tmp_path / "ran.txt",
        tmp_path / "worker.log",
        app="integration.apps.faults_app",
    )
    wait_for(lambda: "broker not reachable" in worker.log(), 30, worker.log)
    worker.signal(signal.SIGTERM)
    assert worker.process.wait(30) == 0


def test_a_dead_letter_whose_queue_was_deleted_declares_it_again_without_rerunning(
    broker_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = f"nodead{uuid.uuid4().hex[:8]}"
    record = tmp_path / "ran.txt"
    monkeypatch.setenv("RABBITQ_TEST_RECORD", str(record))
    monkeypatch.setattr(faults_app.app, "broker_url", broker_url)
    faults_app.app._declare_once.reset()
    worker = WorkerProcess(
        broker_url, queue, record, tmp_path / "worker.log", app="integration.apps.faults_app"
    )
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        worker.wait_until_consuming()
        faults_app.app.ensure_queue(queue)  # declared (with its .dead) before, not after:
        channel = connection.channel()
        channel.queue_delete(f"{queue}.dead")  # an operator deleted it: dead letters bounce
        failing = faults_app.fails.apply_async(("bounced",), queue=queue)
        wait_for(lambda: _exists(broker_url, f"{queue}.dead"), 30, worker.log)
        wait_for(lambda: _depth(channel, f"{queue}.dead") == 1, 30, worker.log)
        method, properties, _body = channel.basic_get(f"{queue}.dead", auto_ack=True)
        assert method is not None and properties.message_id == failing.id
        assert properties.headers["rabbitq_reason"] == "task-failed"
        assert "not confirmed (UnroutableError" in worker.log()
        assert _runs(record)[failing.id] == 1  # not requeued, not run again
        assert _depth(channel, queue) == 0
        assert worker.process.poll() is None
    finally:
        connection.close()
        assert worker.stop() == 0
        faults_app.app.close()


def _exists(broker_url: str, queue: str) -> bool:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        connection.channel().queue_declare(queue, passive=True)
        return True
    except pika.exceptions.ChannelClosedByBroker:
        return False
    finally:
        if connection.is_open:
            connection.close()


def _depth(channel: object, queue: str) -> int:
    ok = channel.queue_declare(queue, passive=True)  # type: ignore[attr-defined]
    return int(ok.method.message_count)


def test_a_worker_warns_when_a_quorum_queues_delivery_limit_would_cut_in_first(
    broker_url: str, tmp_path: Path
) -> None:
    queue = f"limited{uuid.uuid4().hex[:8]}"
    routing = tmp_path / "routing.yaml"
    routing.write_text(f"queues:\n  {queue}:\n    type: quorum\n    delivery_limit: 3\n")
    worker = WorkerProcess(
        broker_url, queue, tmp_path / "ran.txt", tmp_path / "worker.log",
        "--routing", str(routing),
        env={"RABBITQ_TEST_REDELIVERY_LIMIT": "5"},
        app="integration.apps.faults_app",
    )  # fmt: skip
    try:
        worker.wait_until_consuming()
        assert "the broker's delivery limit (3) is not above" in worker.log()
    finally:
        assert worker.stop() == 0
