"""``get()`` inside a running task fails that task at once; the worker keeps serving."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import rabbitq
from integration.apps import get_in_task_app
from integration.support import WorkerProcess, running_worker

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def worker(
    broker_url: str, unique_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[WorkerProcess]:
    app = get_in_task_app.app
    monkeypatch.setattr(app, "broker_url", broker_url)
    monkeypatch.setattr(app, "default_queue", unique_name)
    monkeypatch.setattr(app, "result_backend_url", "rpc://")
    monkeypatch.setattr(app, "_backend", None)
    app._declare_once.reset()
    env = {"RABBITQ_TEST_QUEUE": unique_name, "RABBITQ_RESULT_BACKEND": "rpc://"}
    with running_worker(
        broker_url, unique_name, tmp_path, env=env, app="integration.apps.get_in_task_app"
    ) as process:
        yield process
    app.close()
    app._publisher = None


def assert_still_serving(worker: WorkerProcess) -> None:
    assert worker.process.poll() is None
    assert get_in_task_app.add.delay(2, 3).get(timeout=30) == 5


def test_get_inside_a_task_fails_that_task_with_get_inside_task_error(
    worker: WorkerProcess,
) -> None:
    with pytest.raises(rabbitq.TaskError) as caught:
        get_in_task_app.waits.delay().get(timeout=30)
    assert caught.value.exc_type == "GetInsideTaskError"
    assert_still_serving(worker)


def test_blocking_get_inside_an_async_task_fails_that_task_with_get_inside_task_error(
    worker: WorkerProcess,
) -> None:
    with pytest.raises(rabbitq.TaskError) as caught:
        get_in_task_app.awaits_blocking.delay().get(timeout=30)
    assert caught.value.exc_type == "GetInsideTaskError"
    assert_still_serving(worker)


def test_get_inside_a_task_with_disable_sync_subtasks_false_returns_the_result(
    worker: WorkerProcess,
) -> None:
    assert get_in_task_app.waits_opted_out.delay().get(timeout=60) == 3
