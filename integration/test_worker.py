"""The worker against a real broker: runs everything, loses nothing, dead-letters bad input."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import msgpack
import pika
import pytest

import rabbitq
from integration.apps import core_app
from integration.support import (
    WorkerProcess,
    drain_queue,
    ran_ids,
    ran_labels,
    running_worker,
    wait_for,
)


def _publish_concurrently(count: int, publish: object, threads: int = 8) -> list[str]:
    ids: list[str] = []
    lock = threading.Lock()

    def run(start: int) -> None:
        for i in range(start, count, threads):
            handle = publish(i)  # type: ignore[operator]
            with lock:
                ids.append(handle.id)

    workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return ids


def test_ten_thousand_tasks_all_run(
    app: rabbitq.App, broker_url: str, unique_name: str, tmp_path: Path
) -> None:
    ids = _publish_concurrently(
        10_000, lambda i: core_app.record.apply_async((i,), queue=unique_name)
    )
    with running_worker(broker_url, unique_name, tmp_path, "--loglevel", "WARNING"):
        wait_for(
            lambda: len(ran_ids(tmp_path / "ran.txt")) >= 10_000,
            180,
            lambda: f"{len(ran_ids(tmp_path / 'ran.txt'))} of 10000 ran",
        )
    assert set(ran_ids(tmp_path / "ran.txt")) == set(ids)


def test_async_task_runs_on_the_loop(
    app: rabbitq.App, broker_url: str, unique_name: str, tmp_path: Path
) -> None:
    with running_worker(broker_url, unique_name, tmp_path):
        handle = core_app.async_record.apply_async(("async",), queue=unique_name)
        wait_for(lambda: handle.id in ran_ids(tmp_path / "ran.txt"), 30)


def test_worker_killed_mid_run_loses_nothing(
    app: rabbitq.App, broker_url: str, unique_name: str, tmp_path: Path
) -> None:
    record = tmp_path / "ran.txt"
    ids = _publish_concurrently(
        5_000, lambda i: core_app.slow_record.apply_async((i, 0.001), queue=unique_name)
    )
    first = WorkerProcess(
        broker_url, unique_name, record, tmp_path / "w1.log", "--loglevel", "WARNING"
    )
    first.wait_until_consuming()
    wait_for(lambda: len(ran_ids(record)) >= 1_000, 60)
    first.kill()  # SIGKILL: no chance to ack what it was running or had prefetched
    assert 0 < len(ran_ids(record)) < 5_000
    with running_worker(broker_url, unique_name, tmp_path, "--loglevel", "WARNING"):
        wait_for(
            lambda: set(ran_ids(record)) >= set(ids),
            120,
            lambda: f"{len(set(ids) - set(ran_ids(record)))} never ran",
        )
    counts = ran_ids(record)
    twice = sum(1 for n in counts.values() if n > 1)
    print(f"\n5000 tasks, worker SIGKILLed mid-run: {twice} ran twice")
    assert set(counts) == set(ids)


def test_sigterm_finishes_the_running_task_then_exits_zero(
    app: rabbitq.App, broker_url: str, unique_name: str, tmp_path: Path
) -> None:
    worker = WorkerProcess(broker_url, unique_name, tmp_path / "ran.txt", tmp_path / "w.log")
    worker.wait_until_consuming()
    handle = core_app.slow_record.apply_async(("slow", 2.0), queue=unique_name)
    wait_for(lambda: "slow_record" in worker.log() or True, 1)
    time.sleep(0.5)  # let it start
    worker.signal(signal.SIGTERM)
    # Wait for it: stop() would send a second SIGTERM, which means "exit now".
    assert worker.process.wait(30) == 0
    worker.stop()
    assert handle.id in ran_ids(tmp_path / "ran.txt")
    assert drain_queue(broker_url, unique_name) == []  # acked, not redelivered


def test_second_signal_exits_at_once_and_the_task_is_redelivered(
    app: rabbitq.App, broker_url: str, unique_name: str, tmp_path: Path
) -> None:
    worker = WorkerProcess(broker_url, unique_name, tmp_path / "ran.txt", tmp_path / "w.log")
    worker.wait_until_consuming()
    core_app.slow_record.apply_async(("very slow", 30.0), queue=unique_name)
    time.sleep(1.0)
    worker.signal(signal.SIGTERM)
    time.sleep(0.3)
    worker.signal(signal.SIGTERM)
    assert worker.stop(timeout=10) != 0
    wait_for(lambda: len(drain_queue(broker_url, unique_name)) == 1, 10)


class TestBadInputIsDeadLetteredWhileTheWorkerKeepsGoing:
    @pytest.fixture
    def worker(
        self, app: rabbitq.App, broker_url: str, unique_name: str, tmp_path: Path
    ) -> WorkerProcess:
        with running_worker(broker_url, unique_name, tmp_path) as worker:
            yield worker

    def _dead(self, broker_url: str, queue: str, count: int = 1) -> list[dict[str, object]]:
        found: list[dict[str, object]] = []

        def collect() -> bool:
            found.extend(p.headers for p, _ in drain_queue(broker_url, queue + ".dead"))
            return len(found) >= count

        wait_for(collect, 30, lambda: f"{len(found)} dead letters in {queue}.dead")
        return found

    def _still_working(self, queue: str, tmp_path: Path) -> None:
        handle = core_app.record.apply_async(("after",), queue=queue)
        wait_for(lambda: handle.id in ran_ids(tmp_path / "ran.txt"), 30)

    def _publish_raw(
        self,
        broker_url: str,
        queue: str,
        body: bytes,
        headers: dict[str, object],
        content_type: str = "application/x-msgpack",
    ) -> None:
        connection = pika.BlockingConnection(pika.URLParameters(broker_url))
        try:
            connection.channel().basic_publish(
                "rabbitq",
                queue,
                body,
                pika.BasicProperties(
                    headers=headers, content_type=content_type, message_id="raw-1", delivery_mode=2
                ),
            )
        finally:
            connection.close()

    def test_undecodable_body(
        self, worker: WorkerProcess, broker_url: str, unique_name: str, tmp_path: Path
    ) -> None:
        self._publish_raw(
            broker_url, unique_name, b"\xc1\xc1 not msgpack", {"task": "it.record", "id": "raw-1"}
        )
        [dead] = self._dead(broker_url, unique_name)
        assert dead["rabbitq_reason"] == "undecodable"
        assert dead["rabbitq_original_queue"] == unique_name
        assert dead["rabbitq_original_routing_key"] == unique_name
        assert "msgpack" in str(dead["rabbitq_exception_message"])
        self._still_working(unique_name, tmp_path)
        assert "dead-lettered" in worker.log()

    def test_unknown_task(
        self,
        worker: WorkerProcess,
        app: rabbitq.App,
        broker_url: str,
        unique_name: str,
        tmp_path: Path,
    ) -> None:
        app.send_task("it.no_such_task", (1,), queue=unique_name)
        [dead] = self._dead(broker_url, unique_name)
        assert dead["rabbitq_reason"] == "unknown-task"
        assert "it.no_such_task" in str(dead["rabbitq_exception_message"])
        self._still_working(unique_name, tmp_path)

    def test_bad_arguments(
        self, worker: WorkerProcess, broker_url: str, unique_name: str, tmp_path: Path
    ) -> None:
        core_app.two_args.apply_async((1, 2, 3), queue=unique_name)
        [dead] = self._dead(broker_url, unique_name)
        assert dead["rabbitq_reason"] == "bad-arguments"
        assert dead["rabbitq_exception_type"] == "TaskArgumentsError"
        self._still_working(unique_name, tmp_path)

    def test_expired_task(
        self, worker: WorkerProcess, broker_url: str, unique_name: str, tmp_path: Path
    ) -> None:
        import datetime as dt

        past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
        handle = core_app.record.apply_async(("late",), queue=unique_name, expires=past)
        [dead] = self._dead(broker_url, unique_name)
        assert dead["rabbitq_reason"] == "expired"
        self._still_working(unique_name, tmp_path)
        assert handle.id not in ran_ids(tmp_path / "ran.txt")

    def test_failing_task_keeps_its_traceback(
        self, worker: WorkerProcess, broker_url: str, unique_name: str, tmp_path: Path
    ) -> None:
        core_app.fail.apply_async(("kaboom",), queue=unique_name)
        [dead] = self._dead(broker_url, unique_name)
        assert dead["rabbitq_reason"] == "task-failed"
        assert dead["rabbitq_exception_type"] == "ValueError"
        assert dead["rabbitq_exception_message"] == "kaboom"
        assert "raise ValueError(message)" in str(dead["rabbitq_traceback"])
        assert dead["rabbitq_attempts"] == 1
        self._still_working(unique_name, tmp_path)

    def test_json_message_from_another_producer_runs(
        self, worker: WorkerProcess, broker_url: str, unique_name: str, tmp_path: Path
    ) -> None:
        import json

        body = json.dumps([["from json"], {}, {}]).encode()
        self._publish_raw(
            broker_url,
            unique_name,
            body,
            {"task": "it.record", "id": "json-1"},
            content_type="application/json",
        )
        wait_for(lambda: "json-1" in ran_ids(tmp_path / "ran.txt"), 30)
        assert "from json" in ran_labels(tmp_path / "ran.txt")

    def test_args_that_are_not_a_list_are_undecodable(
        self, worker: WorkerProcess, broker_url: str, unique_name: str
    ) -> None:
        body = msgpack.packb([{"not": "a list"}, {}, {}])
        self._publish_raw(broker_url, unique_name, body, {"task": "it.record", "id": "x"})
        [dead] = self._dead(broker_url, unique_name)
        assert dead["rabbitq_reason"] == "undecodable"


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
def test_message_that_keeps_killing_workers_is_dead_lettered(
    app: rabbitq.App, broker_url: str, unique_name: str, tmp_path: Path, queue_type: str
) -> None:
    routing = tmp_path / "routing.yaml"
    routing.write_text(f"queues:\n  {unique_name}:\n    type: {queue_type}\n")
    with running_worker(
        broker_url,
        unique_name,
        tmp_path,
        "--processes",
        "2",
        "--routing",
        str(routing),
        env={"RABBITQ_TEST_REDELIVERY_LIMIT": "2"},
    ) as worker:
        worker.wait_until_consuming(count=2)
        core_app.crash.apply_async(queue=unique_name)
        found: list[dict[str, object]] = []

        def collect() -> bool:
            found.extend(p.headers for p, _ in drain_queue(broker_url, unique_name + ".dead"))
            return bool(found)

        wait_for(collect, 90, lambda: worker.log()[-2000:])
    assert found[0]["rabbitq_reason"] == "redelivery-limit"
    assert "died" in worker.log()  # the supervisor restarted the crashed processes
