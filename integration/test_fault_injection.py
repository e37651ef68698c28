"""Fault injection against a real worker: for each failure point of the pipeline, the message
ends in exactly one place (ran once and acked, retried, or in the named dead-letter queue with
its reason) and the worker process lives on to run the next task.
"""

from __future__ import annotations

import collections
import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import pika
import pytest

from integration.apps import faults_app
from integration.support import (
    WorkerProcess,
    drain_queue,
    queue_depth,
    ran_ids,
    running_worker,
    wait_for,
)

pytestmark = pytest.mark.timeout(240)


@dataclass
class Faults:
    broker_url: str
    queue: str
    worker: WorkerProcess
    record: Path
    dead: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: collections.defaultdict(list)
    )

    def send(self, task: str, *args: Any, **options: Any) -> str:
        task_id = str(uuid.uuid4())
        faults_app.app.send_task(task, args, queue=self.queue, task_id=task_id, **options)
        return task_id

    def send_raw(self, body: bytes, headers: dict[str, Any]) -> str:
        message_id = str(uuid.uuid4())
        connection = pika.BlockingConnection(pika.URLParameters(self.broker_url))
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            channel.basic_publish(
                "",
                self.queue,
                body,
                pika.BasicProperties(
                    headers={**headers, "id": message_id},
                    message_id=message_id,
                    content_type="application/x-msgpack",
                    delivery_mode=2,
                ),
                mandatory=True,
            )
        finally:
            connection.close()
        return message_id

    def dead_letters(self, task_id: str) -> list[dict[str, Any]]:
        for properties, _body in drain_queue(self.broker_url, f"{self.queue}.dead"):
            headers = properties.headers or {}
            self.dead[str(headers.get("id") or properties.message_id)].append(headers)
        return self.dead[task_id]

    def runs(self, task_id: str) -> int:
        return ran_ids(self.record)[task_id] - self.hooks(task_id)

    def hooks(self, task_id: str) -> int:
        if not self.record.exists():
            return 0
        return sum(
            1
            for line in self.record.read_text().splitlines()
            if line.startswith(f"{task_id} hook:")
        )

    def assert_alive(self) -> None:
        assert self.worker.process.poll() is None, self.worker.log()[-3000:]
        probe = self.send("faults.ok", "probe")
        wait_for(lambda: self.runs(probe) == 1, 30, lambda: self.worker.log()[-3000:])


@pytest.fixture(scope="module")
def faults(broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Faults]:
    tmp_path = tmp_path_factory.mktemp("faults")
    queue = f"faults{uuid.uuid4().hex[:8]}"
    record = tmp_path / "ran.txt"
    faults_app.app.broker_url = broker_url
    faults_app.app._declare_once.reset()
    env = {"RABBITQ_TEST_RECORD": str(record), "RABBITQ_TEST_FOLLOWUP_RETRY_FOR": "2"}
    import os

    os.environ["RABBITQ_TEST_RECORD"] = str(record)
    faults_app.app.ensure_queue(queue)
    with running_worker(
        broker_url,
        queue,
        tmp_path,
        "--concurrency",
        "4",
        env=env,
        app="integration.apps.faults_app",
    ) as worker:
        yield Faults(broker_url, queue, worker, record)
    faults_app.app.close()


def a_link_to(task: str, **options: Any) -> dict[str, Any]:
    return {"task": task, "args": [], "kwargs": {}, "options": options}


@dataclass(frozen=True)
class Case:
    send: Callable[[Faults], str]
    runs: int  # times the task body ran
    dead_reason: str | None  # the one dead letter it leaves, or None
    exception: str | None = None


CASES = {
    "returns": Case(lambda f: f.send("faults.ok", "x"), 1, None),
    "undecodable body": Case(
        lambda f: f.send_raw(b"\xc1\xc1", {"task": "faults.ok", "lang": "py"}), 0, "undecodable"
    ),
    "args not a list": Case(
        lambda f: f.send_raw(msgpack.packb([7, {}, {}]), {"task": "faults.ok", "lang": "py"}),
        0,
        "undecodable",
    ),
    "unknown task": Case(lambda f: f.send("faults.nobody", "x"), 0, "unknown-task"),
    "bad arguments": Case(lambda f: f.send("faults.ok", "x", "y", "z"), 0, "bad-arguments"),
    "expired": Case(
        lambda f: f.send(
            "faults.ok", "x", expires=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        ),
        0,
        "expired",
    ),
    "raises": Case(lambda f: f.send("faults.fails", "x"), 1, "task-failed", "ValueError"),
    "sys.exit in a thread": Case(
        lambda f: f.send("faults.exits", "x"), 1, "task-failed", "SystemExit"
    ),
    "KeyboardInterrupt in async": Case(
        lambda f: f.send("faults.interrupts", "x"), 1, "task-failed", "KeyboardInterrupt"
    ),
    "retried then succeeds": Case(lambda f: f.send("faults.retry_once", "x"), 2, None),
    "retries exhausted": Case(lambda f: f.send("faults.always_retry", "x"), 2, "retries-exhausted"),
    "unencodable result": Case(
        lambda f: f.send("faults.unencodable", "x", link=[a_link_to("faults.ok")]),
        1,
        "task-failed",
        "ResultEncodeError",
    ),
    "before_process raises": Case(
        lambda f: f.send("faults.ok", "middleware-fails"), 0, "task-failed", "RuntimeError"
    ),
    "callback routed nowhere": Case(
        lambda f: f.send("faults.ok", "x", link=[a_link_to("faults.ok", routing_key="nowhere")]),
        1,
        "followup-failed",
        "FollowupError",
    ),
    "malformed errback": Case(
        lambda f: f.send("faults.fails", "x", link_error=[{"not": "a signature"}]),
        1,
        "task-failed",
        "ValueError",
    ),
    "errback routed nowhere": Case(
        lambda f: f.send(
            "faults.fails", "x", link_error=[a_link_to("faults.ok", routing_key="nowhere")]
        ),
        1,
        "task-failed",
        "ValueError",
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_each_failure_point_ends_in_exactly_one_place_and_the_worker_lives(
    faults: Faults, case: Case
) -> None:
    task_id = case.send(faults)

    def settled() -> bool:
        dead = faults.dead_letters(task_id)
        if case.dead_reason is not None:
            return len(dead) >= 1
        return faults.runs(task_id) >= case.runs

    wait_for(settled, 60, lambda: faults.worker.log()[-3000:])
    faults.assert_alive()  # also gives any duplicate time to show up
    dead = faults.dead_letters(task_id)
    assert faults.runs(task_id) == case.runs
    assert queue_depth(faults.broker_url, faults.queue) == 0
    if case.dead_reason is None:
        assert dead == []
        return
    [letter] = dead
    assert letter["rabbitq_reason"] == case.dead_reason
    if case.exception is not None:
        assert letter["rabbitq_exception_type"] == case.exception


def test_a_failure_whose_errback_cannot_be_sent_says_why_on_its_dead_letter(
    faults: Faults,
) -> None:
    task_id = faults.send("faults.fails", "x", link_error=[{"not": "a signature"}])
    wait_for(lambda: bool(faults.dead_letters(task_id)), 60)
    [letter] = faults.dead_letters(task_id)
    assert "rabbitq_followup_error" in letter


def test_middleware_and_signal_receivers_run_in_the_worker(faults: Faults) -> None:
    task_id = faults.send("faults.ok", "hooked")
    wait_for(lambda: faults.hooks(task_id) >= 2, 30)
    lines = [line for line in faults.record.read_text().splitlines() if line.startswith(task_id)]
    assert lines == [
        f"{task_id} hook:task_prerun",
        f"{task_id} hooked",
        f"{task_id} hook:after_process",
    ]
