"""Remote control against real workers: Celery 5's own CLI (``celery inspect``/``control``)
and rabbitq's, and revokes that live in the broker (``rabbitq.revocations``).

Every test runs its workers on a queue and node name of its own; results go to a throwaway
Redis, so a test reads REVOKED as any process would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import rabbitq
from integration.support import WorkerProcess, queue_depth, ran_labels, wait_for

pytestmark = pytest.mark.timeout(240)

CONTROL_APP = "integration.apps.control_app"
CELERY_APP = "integration.apps.celery_control"


@dataclass
class Control:
    broker_url: str
    redis_url: str
    queue: str
    tmp_path: Path

    @property
    def record_file(self) -> Path:
        return self.tmp_path / "ran.txt"

    @property
    def env(self) -> dict[str, str]:
        return {
            "RABBITQ_BROKER_URL": self.broker_url,
            "RABBITQ_RESULT_BACKEND": self.redis_url,
            "CONTROL_QUEUE": self.queue,
            "RABBITQ_TEST_RECORD": str(self.record_file),
        }

    def node(self, name: str) -> str:
        return f"{name}-{self.queue}@test"

    def worker(self, name: str, *args: str, processes: int = 1) -> WorkerProcess:
        worker = WorkerProcess(
            self.broker_url,
            self.queue,
            self.record_file,
            self.tmp_path / f"{name}-{uuid.uuid4().hex[:4]}.log",
            "-n",
            self.node(name),
            *args,
            env=self.env,
            app=CONTROL_APP,
        )
        worker.wait_until_consuming(count=processes)  # each process: a node with a mailbox
        return worker

    def app(self) -> rabbitq.App:
        return rabbitq.App("control", broker=self.broker_url, result_backend=self.redis_url)

    def send(self, task: str, *args: Any, **options: Any) -> rabbitq.AsyncResult:
        return self.app().send_task(task, args=list(args), queue=self.queue, **options)

    def run(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        command = (
            [sys.executable, "-m", "celery", "-A", CELERY_APP, *args]
            if program == "celery"
            else [sys.executable, "-m", "rabbitq", *args]
        )
        return subprocess.run(
            command,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=60,
        )

    def ask(self, program: str, *args: str) -> dict[str, Any]:
        """A command with ``--json``: the {node: reply} it printed."""
        done = self.run(program, *args, "-j")
        assert done.returncode == 0, done.stdout + done.stderr
        parsed = json.loads(done.stdout.strip().splitlines()[-1])
        if isinstance(parsed, list):  # celery control -j prints its replies as they came
            return {node: value for reply in parsed for node, value in reply.items()}
        answer: dict[str, Any] = parsed
        return answer

    def labels(self) -> list[str]:
        return ran_labels(self.record_file)

    def wait_recorded(self, label: str, timeout: float = 60) -> None:
        wait_for(lambda: label in self.labels(), timeout, lambda: f"{label} never recorded")


@pytest.fixture
def control(broker_url: str, redis_url: str, unique_name: str, tmp_path: Path) -> Iterator[Control]:
    yield Control(broker_url, redis_url, unique_name, tmp_path)


def state_of(result: rabbitq.AsyncResult) -> str:
    return result.state


# -- inspect: Celery's CLI and ours --------------------------------------------------------


@pytest.mark.parametrize("program", ["celery", "rabbitq"])
def test_inspect_ping_answers_pong_from_each_named_node(control: Control, program: str) -> None:
    worker = control.worker("a")
    try:
        node = control.node("a")
        assert control.ask(program, "inspect", "ping", "-d", node) == {node: {"ok": "pong"}}
    finally:
        worker.stop()


@pytest.mark.parametrize("program", ["celery", "rabbitq"])
def test_inspect_active_lists_the_running_task(control: Control, program: str) -> None:
    worker = control.worker("a")
    try:
        running = control.send("ctl.spin", "busy", 20)
        control.wait_recorded("busy-started")
        node = control.node("a")
        (task,) = control.ask(program, "inspect", "active", "-d", node)[node]
        assert task["id"] == running.id and task["name"] == "ctl.spin"
        assert task["hostname"] == node and task["worker_pid"] == worker.process.pid
        assert isinstance(task["time_start"], float) and task["acknowledged"] is False
    finally:
        worker.stop(timeout=60)


@pytest.mark.parametrize("program", ["celery", "rabbitq"])
def test_inspect_registered_names_the_app_s_tasks(control: Control, program: str) -> None:
    worker = control.worker("a")
    try:
        node = control.node("a")
        names = control.ask(program, "inspect", "registered", "-d", node)[node]
        assert {"ctl.record", "ctl.spin", "ctl.wait", "ctl.retry_later"} <= set(names)
        assert not [name for name in names if name.startswith(("rabbitq.", "celery."))]
    finally:
        worker.stop()


@pytest.mark.parametrize("program", ["celery", "rabbitq"])
def test_inspect_stats_counts_runs_and_names_the_broker(control: Control, program: str) -> None:
    worker = control.worker("a")
    try:
        control.send("ctl.record", "one").get(timeout=30)
        node = control.node("a")
        stats = control.ask(program, "inspect", "stats", "-d", node)[node]
        assert stats["total"] == {"ctl.record": 1}
        assert stats["pid"] == worker.process.pid and isinstance(stats["clock"], str)
        assert stats["broker"]["transport"] == "amqp" and "password" not in stats["broker"]
        assert stats["pool"]["max-concurrency"] == 8 and stats["prefetch_count"] == 32
    finally:
        worker.stop()


def test_celery_inspect_says_no_nodes_replied_and_exits_69_when_none_runs(
    control: Control,
) -> None:
    done = control.run("celery", "inspect", "ping", "-d", control.node("nobody"))
    assert done.returncode == 69 and "No nodes replied" in done.stdout + done.stderr
    done = control.run("rabbitq", "inspect", "ping", "-d", control.node("nobody"))
    assert done.returncode == 69 and "No nodes replied" in done.stderr


def test_a_command_rabbitq_cannot_carry_out_answers_an_error_saying_why(
    control: Control,
) -> None:
    worker = control.worker("a")
    try:
        node = control.node("a")
        done = control.run("celery", "control", "pool_restart", "-d", node)
        assert "ERROR" in done.stdout and "pool restarts are not supported" in done.stdout
        reply = control.ask("rabbitq", "control", "rate_limit", "ctl.record", "5/s", "-d", node)
        assert "rate limits are not supported" in reply[node]["error"]
    finally:
        worker.stop()


def test_add_consumer_and_cancel_consumer_change_what_the_node_consumes(
    control: Control,
) -> None:
    worker = control.worker("a")
    extra = f"{control.queue}-extra"
    try:
        node = control.node("a")
        reply = control.ask("celery", "control", "add_consumer", extra, "-d", node)
        assert reply == {node: {"ok": f"add consumer {extra}"}}
        queues = control.ask("rabbitq", "inspect", "active_queues", "-d", node)[node]
        assert [queue["name"] for queue in queues] == [control.queue, extra]
        control.app().send_task("ctl.record", args=["via-extra"], queue=extra)
        control.wait_recorded("via-extra")
        reply = control.ask("rabbitq", "control", "cancel_consumer", extra, "-d", node)
        assert reply == {node: {"ok": f"no longer consuming from {extra}"}}
        control.app().send_task("ctl.record", args=["left"], queue=extra)
        time.sleep(1.0)
        assert "left" not in control.labels() and queue_depth(control.broker_url, extra) == 1
    finally:
        worker.stop()


# -- shutdown -------------------------------------------------------------------------------


@pytest.mark.parametrize("program", ["celery", "rabbitq"])
def test_control_shutdown_stops_the_whole_worker_gracefully(control: Control, program: str) -> None:
    worker = control.worker("a", "--processes", "2", processes=2)
    node = control.node("a").replace("@", "-1@", 1)
    control.run(program, "control", "shutdown", "-d", node)
    assert worker.process.wait(timeout=60) == 0
    assert "all worker processes stopped" in worker.log()


def test_a_second_worker_with_the_same_node_name_runs_without_a_mailbox(
    control: Control,
) -> None:
    first = control.worker("same")
    second = control.worker("same")
    try:
        node = control.node("same")
        assert control.ask("rabbitq", "inspect", "ping", "-d", node) == {node: {"ok": "pong"}}
        wait_for(lambda: "is in use by another running worker" in second.log(), 30)
        assert second.process.poll() is None
        control.send("ctl.record", "still-works").get(timeout=30)
    finally:
        second.stop()
        first.stop()


# -- revokes that are never forgotten --------------------------------------------------------


@pytest.mark.parametrize("program", ["celery", "rabbitq"])
def test_a_task_revoked_in_its_countdown_never_runs_after_every_worker_restarted(
    control: Control, program: str
) -> None:
    worker = control.worker("a")
    waiting = control.send("ctl.record", "revoked", countdown=8)
    control.run(program, "control", "revoke", waiting.id)
    wait_for(lambda: waiting.id in _revoked_on(control, "a"), 30)
    worker.stop()
    # Every worker down, the countdown passes; a fresh worker reads the log and drops it.
    worker = control.worker("b")
    try:
        control.send("ctl.record", "after").get(timeout=30)
        wait_for(lambda: state_of(waiting) == "REVOKED", 60, lambda: state_of(waiting))
        assert "revoked" not in control.labels()
        assert "revoked" in worker.log() and "dead" not in _queues_with_messages(control)
    finally:
        worker.stop()


def test_a_revoke_sent_while_no_worker_runs_is_kept_for_the_next(control: Control) -> None:
    waiting = control.send("ctl.record", "revoked", countdown=3)
    done = control.run("rabbitq", "control", "revoke", waiting.id)
    assert done.returncode == 0 and "stored in rabbitq.revocations" in done.stdout
    worker = control.worker("a")
    try:
        wait_for(lambda: state_of(waiting) == "REVOKED", 60, lambda: state_of(waiting))
        assert "revoked" not in control.labels()
    finally:
        worker.stop()


def test_a_retry_in_flight_revoked_never_runs_again(control: Control) -> None:
    worker = control.worker("a")
    retrying = control.send("ctl.retry_later", "flaky", 6)
    control.wait_recorded("flaky-attempt-0")
    retrying.revoke()
    worker.stop()
    worker = control.worker("b")
    try:
        wait_for(lambda: state_of(retrying) == "REVOKED", 60, lambda: state_of(retrying))
        assert "flaky-attempt-1" not in control.labels()
    finally:
        worker.stop()


def test_a_chain_s_next_step_revoked_never_runs(control: Control) -> None:
    app = control.app()
    worker = control.worker("a")
    second_id = str(uuid.uuid4())

    def step(task: str, *args: Any, **options: Any) -> rabbitq.Signature:
        options["queue"] = control.queue
        return rabbitq.Signature(task, args, options=options, immutable=True, app=app)

    try:
        rabbitq.chain(
            step("ctl.spin", "first", 3),
            step("ctl.record", "second", task_id=second_id),
            step("ctl.record", "third"),
        ).apply_async()
        control.wait_recorded("first-started")
        next_step = app.AsyncResult(second_id)
        next_step.revoke()  # while the first step runs: the next is not even sent yet
        control.wait_recorded("first")
        wait_for(lambda: state_of(next_step) == "REVOKED", 60, lambda: state_of(next_step))
        time.sleep(1.0)
        assert "second" not in control.labels() and "third" not in control.labels()
    finally:
        worker.stop()


@pytest.mark.parametrize("task", ["ctl.spin", "ctl.wait"])
def test_terminate_raises_terminated_in_the_running_task_and_ends_revoked(
    control: Control, task: str
) -> None:
    worker = control.worker("a")
    try:
        running = control.send(task, "long", 60)
        control.wait_recorded("long-started")
        reply = control.ask("celery", "control", "terminate", "TERM", running.id)
        assert reply == {control.node("a"): {"ok": f"terminate: {running.id}"}}
        control.wait_recorded("terminated")
        wait_for(lambda: state_of(running) == "REVOKED", 30, lambda: state_of(running))
        assert "long" not in control.labels()
        assert queue_depth(control.broker_url, f"{control.queue}.dead") == 0
        control.send("ctl.record", "next").get(timeout=30)  # the worker lives on
    finally:
        worker.stop()


def test_inspect_revoked_lists_what_the_node_keeps(control: Control) -> None:
    worker = control.worker("a")
    try:
        task_id = str(uuid.uuid4())
        control.app().control.revoke(task_id)
        wait_for(lambda: task_id in _revoked_on(control, "a"), 30)
    finally:
        worker.stop()


def _revoked_on(control: Control, name: str) -> list[str]:
    node = control.node(name)
    replies = control.app().control.inspect([node]).revoked() or {}
    revoked: list[str] = replies.get(node, [])
    return revoked


def _queues_with_messages(control: Control) -> str:
    return " ".join(
        name
        for name in (control.queue, f"{control.queue}.dead")
        if queue_depth(control.broker_url, name)
    )


def test_revoking_a_group_result_revokes_every_member(control: Control) -> None:
    app = control.app()
    members = [
        rabbitq.Signature("ctl.record", (f"member-{i}",), options={"queue": control.queue}, app=app)
        for i in range(3)
    ]
    result = rabbitq.group(members).apply_async()  # revoked before any worker runs
    assert isinstance(result, rabbitq.GroupResult)
    result.revoke()
    worker = control.worker("a")
    try:
        leaves = [member for member in result.results if isinstance(member, rabbitq.AsyncResult)]
        assert len(leaves) == 3

        def states() -> list[str]:
            return [state_of(leaf) for leaf in leaves]

        wait_for(lambda: states() == ["REVOKED"] * 3, 60, lambda: str(states()))
        assert not [label for label in control.labels() if label.startswith("member-")]
    finally:
        worker.stop()
