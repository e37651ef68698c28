"""Task results over every backend (rpc reply queues, Redis, PostgreSQL), against a real
worker."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid

import pika
import pytest

import rabbitq
from integration.apps import canvas_app
from integration.conftest import CanvasSetup
from integration.support import wait_for


def test_get_returns_the_value(results_setup: CanvasSetup) -> None:
    with results_setup.worker():
        assert canvas_app.add.delay(2, 3).get(timeout=30) == 5


def test_failure_reraises_as_task_error_with_the_remote_traceback(
    results_setup: CanvasSetup,
) -> None:
    with results_setup.worker():
        result = canvas_app.fail.delay("boom 42")
        with pytest.raises(rabbitq.TaskError) as caught:
            result.get(timeout=30)
    error = caught.value
    assert error.exc_type == "ValueError"
    assert error.exc_message == "boom 42"
    assert error.traceback is not None and "raise ValueError(message)" in error.traceback
    assert "Remote traceback" in str(error)
    assert result.state == "FAILURE" and result.failed() and not result.successful()


def test_get_without_propagate_returns_the_error(results_setup: CanvasSetup) -> None:
    with results_setup.worker():
        error = canvas_app.fail.delay("quiet").get(timeout=30, propagate=False)
    assert isinstance(error, rabbitq.TaskError) and error.exc_message == "quiet"


def test_get_past_its_timeout_raises(results_setup: CanvasSetup) -> None:
    with results_setup.worker():
        result = canvas_app.sleep_then.delay(1, 3.0)
        with pytest.raises(rabbitq.ResultTimeoutError, match=r"did not finish within 0\.5s"):
            result.get(timeout=0.5)
        assert not result.ready()
        assert result.get(timeout=30) == 1


def test_states_and_forget(results_setup: CanvasSetup) -> None:
    with results_setup.worker():
        result = canvas_app.sleep_then.delay(7, 1.0)
        assert result.state == "PENDING"
        assert result.get(timeout=30) == 7
        assert result.ready() and result.successful() and result.state == "SUCCESS"
        result.forget()
        assert result.state == "PENDING"


def test_async_get_over_the_async_publisher(results_setup: CanvasSetup) -> None:
    async def main() -> tuple[int, int]:
        first = await canvas_app.add.adelay(20, 1)
        second = await canvas_app.mul.aapply_async((4, 5))
        try:
            return await first.aget(timeout=30), await second
        finally:
            await results_setup.app.aclose()

    with results_setup.worker():
        assert asyncio.run(main()) == (21, 20)


def test_an_unserializable_result_is_a_failure_not_a_dead_worker(
    results_setup: CanvasSetup,
) -> None:
    with results_setup.worker():
        with pytest.raises(rabbitq.TaskError) as caught:
            canvas_app.unserializable.delay().get(timeout=30)
        assert caught.value.exc_type == "ResultEncodeError"
        assert "cannot be serialized with msgpack" in caught.value.exc_message
        assert canvas_app.add.delay(1, 1).get(timeout=30) == 2  # the worker lives on


def test_a_task_that_ignores_its_result_says_so(results_setup: CanvasSetup) -> None:
    with results_setup.worker():
        result = canvas_app.noop.delay()
        with pytest.raises(rabbitq.ResultsDisabledError, match="ignores its result"):
            result.get(timeout=5)


def test_without_a_backend_get_raises_at_once(canvas: CanvasSetup) -> None:
    with canvas.worker():
        result = canvas_app.add.delay(1, 2)
        with pytest.raises(rabbitq.ResultsDisabledError, match="no result backend"):
            result.get(timeout=5)


def test_stored_results_are_readable_by_another_app(
    broker_url: str, results_setup: CanvasSetup
) -> None:
    backend = results_setup.app.result_backend_url
    if backend == "rpc://":
        pytest.skip("only the caller can read rpc results")
    with results_setup.worker():
        task_id = canvas_app.add.delay(40, 2).id
        other = rabbitq.App("elsewhere", broker_url, result_backend=backend)
        assert other.AsyncResult(task_id).get(timeout=30) == 42


def test_a_second_process_reads_the_first_ones_results(
    broker_url: str, results_setup: CanvasSetup
) -> None:
    backend = results_setup.app.result_backend_url
    if backend == "rpc://":
        pytest.skip("only the caller can read rpc results")
    with results_setup.worker():
        done = canvas_app.add.delay(1, 2)
        failed = canvas_app.fail.delay("elsewhere")
        assert done.get(timeout=30) == 3
        code = (
            "import sys, rabbitq\n"
            "app = rabbitq.App('reader', sys.argv[1], result_backend=sys.argv[2])\n"
            "print(app.AsyncResult(sys.argv[3]).get(timeout=30))\n"
            "print(app.AsyncResult(sys.argv[4]).get(timeout=30, propagate=False).exc_message)\n"
            "print(app.AsyncResult('never-sent').state)\n"
        )
        reader = subprocess.run(
            [sys.executable, "-c", code, broker_url, backend, done.id, failed.id],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert reader.returncode == 0, reader.stderr
    assert reader.stdout.split("\n")[:3] == ["3", "elsewhere", "PENDING"]


def test_an_rpc_result_for_a_caller_that_has_gone_is_dropped_harmlessly(
    results_setup: CanvasSetup,
) -> None:
    if results_setup.app.result_backend_url != "rpc://":
        pytest.skip("rpc only")
    with results_setup.worker() as worker:
        gone = f"rabbitq.reply.{uuid.uuid4().hex}"  # no such queue: its caller has gone
        canvas_app.add.apply_async((1, 1), reply_to=gone)
        assert canvas_app.add.delay(2, 2).get(timeout=30) == 4
        wait_for(lambda: "succeeded" in worker.log(), 10)
    assert "Traceback" not in worker.log()
    connection = pika.BlockingConnection(pika.URLParameters(results_setup.app.broker_url))
    try:
        depth = connection.channel().queue_declare(results_setup.queue, passive=True)
        assert depth.method.message_count == 0  # both tasks acked
    finally:
        connection.close()
