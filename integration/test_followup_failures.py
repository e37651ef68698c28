"""A task that succeeded is never run again because what follows it failed.

With Redis down, the worker retries storing the result (not the task) until Redis is back, or
until ``followup_retry_for`` passes, when it dead-letters the message ``followup-failed``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import rabbitq
from integration.apps import faults_app
from integration.support import drain_queue, running_worker, wait_for
from rabbitq.testing import LocalRedis

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def redis() -> Iterator[LocalRedis]:
    with LocalRedis() as server:
        yield server


@pytest.fixture
def faults(
    broker_url: str, redis: LocalRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[rabbitq.App]:
    monkeypatch.setenv("RABBITQ_TEST_RECORD", str(tmp_path / "ran.txt"))
    monkeypatch.setattr(faults_app.app, "broker_url", broker_url)
    monkeypatch.setattr(faults_app.app, "result_backend_url", redis.url)
    monkeypatch.setattr(faults_app.app, "_backend", None)
    faults_app.app._declare_once.reset()
    yield faults_app.app
    faults_app.app.close()


def runs(record: Path, task_id: str) -> int:
    lines = record.read_text().splitlines() if record.exists() else []
    return sum(1 for line in lines if line.startswith(task_id) and " hook:" not in line)


def test_a_result_stored_while_redis_is_down_is_retried_not_the_task(
    faults: rabbitq.App, redis: LocalRedis, broker_url: str, tmp_path: Path
) -> None:
    queue = f"followup{uuid.uuid4().hex[:8]}"
    env = {"RABBITQ_RESULT_BACKEND": redis.url, "RABBITQ_TEST_FOLLOWUP_RETRY_FOR": "120"}
    with running_worker(
        broker_url, queue, tmp_path, env=env, app="integration.apps.faults_app"
    ) as worker:
        redis.stop()
        result = faults_app.ok.apply_async(("while down",), queue=queue)
        wait_for(lambda: "retrying them in" in worker.log(), 60, worker.log)
        redis.start()  # the same port
        assert result.get(timeout=60) == "done while down"
        assert runs(tmp_path / "ran.txt", result.id) == 1
        assert drain_queue(broker_url, f"{queue}.dead") == []


def test_a_result_that_cannot_be_stored_in_time_is_dead_lettered_followup_failed(
    faults: rabbitq.App, redis: LocalRedis, broker_url: str, tmp_path: Path
) -> None:
    queue = f"followup{uuid.uuid4().hex[:8]}"
    env = {"RABBITQ_RESULT_BACKEND": redis.url, "RABBITQ_TEST_FOLLOWUP_RETRY_FOR": "1"}
    with running_worker(
        broker_url, queue, tmp_path, env=env, app="integration.apps.faults_app"
    ) as worker:
        redis.stop()
        result = faults_app.ok.apply_async(("never stored",), queue=queue)
        dead: list[tuple[object, bytes]] = []
        wait_for(
            lambda: bool(dead.extend(drain_queue(broker_url, f"{queue}.dead")) or dead),
            60,
            worker.log,
        )
        assert worker.process.poll() is None
    [(properties, _body)] = dead
    assert properties.headers["rabbitq_reason"] == "followup-failed"
    assert "ResultBackendError" in properties.headers["rabbitq_exception_message"]
    assert runs(tmp_path / "ran.txt", result.id) == 1
