"""A real Flower 2 (installed from the registry) watching rabbitq workers, through its HTTP API:
workers from their heartbeats, tasks through every state from their events."""

from __future__ import annotations

import json
import socket
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import rabbitq
from rabbitq.testing import free_port

from .support import LoggedProcess, running_worker, wait_for

HOST = socket.gethostname()


class Flower:
    def __init__(self, process: LoggedProcess, port: int) -> None:
        self.process = process
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.base + path, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body[:1] in (b"{", b"[") else body.decode()

    def answers(self) -> bool:
        try:
            return self.get("/healthcheck") == "OK"
        except OSError:
            return False


@pytest.fixture
def flower(broker_url: str, tmp_path: Path) -> Iterator[Flower]:
    port = free_port()
    process = LoggedProcess(
        [sys.executable, "-m", "celery", "--broker", broker_url, "flower",
         f"--port={port}", "--address=127.0.0.1"],
        tmp_path / "flower.log",
        # Flower 2 serves its API without authentication only when told to.
        {"FLOWER_UNAUTHENTICATED_API": "true"},
    )  # fmt: skip
    running = Flower(process, port)
    try:
        wait_for(running.answers, 60, lambda: f"Flower did not answer; log:\n{process.log()}")
        yield running
    finally:
        process.stop(10)


@pytest.fixture
def events_app(
    broker_url: str, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[rabbitq.App]:
    from integration.apps import events_app

    app = events_app.app
    monkeypatch.setattr(app, "broker_url", broker_url)
    monkeypatch.setattr(app, "default_queue", unique_name)
    app._declare_once.reset()
    yield app
    app.close()
    app._publisher = None


def test_flower_lists_a_rabbitq_worker_and_follows_its_tasks_to_their_ends(
    flower: Flower, broker_url: str, events_app: rabbitq.App, unique_name: str, tmp_path: Path
) -> None:
    node = f"{unique_name}@{HOST}"
    with running_worker(
        broker_url, unique_name, tmp_path, "-E", "-n", f"{unique_name}@%h",
        app="integration.apps.events_app", env={"RABBITQ_TEST_QUEUE": unique_name},
    ):  # fmt: skip
        ok = events_app.tasks["ev.add"].delay(20, 22).id
        failed = events_app.tasks["ev.fail"].delay("boom").id
        retried = events_app.tasks["ev.retry_once"].delay(9).id
        ends = {ok: "SUCCESS", failed: "FAILURE", retried: "SUCCESS"}

        def tasks() -> dict[str, Any]:
            listed: dict[str, Any] = flower.get("/api/tasks")
            return listed

        wait_for(
            lambda: all(tasks().get(i, {}).get("state") == s for i, s in ends.items()),
            30,
            lambda: f"Flower's tasks: {tasks()}",
        )
        listed = tasks()
        assert listed[ok]["result"] == "42" and listed[ok]["worker"] == node
        assert listed[ok]["received"] <= listed[ok]["started"] <= listed[ok]["succeeded"]
        assert listed[ok]["sent"] is not None  # the producer's task-sent
        assert listed[failed]["exception"] == "ValueError('boom')"
        assert listed[retried]["retried"] is not None and listed[retried]["retries"] == 1
        info = flower.get(f"/api/task/info/{ok}")
        assert info["name"] == "ev.add" and info["args"] == "(20, 22)"

        def workers() -> dict[str, Any]:
            return {w["hostname"]: w for w in flower.get("/workers?json=1")["data"]}

        # online, and a heartbeat since the four runs (retried once) counts them
        wait_for(
            lambda: (
                workers().get(node, {}).get("status") is True
                and workers()[node].get("processed") == 4
            ),
            30,
            workers,
        )
        seen = workers()[node]
        assert seen["freq"] == 2.0 and seen["active"] == 0
        assert seen["sw_ident"] == "py-rabbitq"
        metrics = flower.get("/metrics")
        assert f'flower_events_total{{task="ev.add",type="task-succeeded",worker="{node}"}}' in (
            metrics
        )
    # Stopped: its worker-offline event marks it offline.
    wait_for(lambda: workers()[node]["status"] is False, 30, workers)


def test_flower_s_worker_pages_are_filled_by_the_node_s_remote_control_answers(
    flower: Flower, broker_url: str, events_app: rabbitq.App, unique_name: str, tmp_path: Path
) -> None:
    node = f"{unique_name}@{HOST}"
    with running_worker(
        broker_url, unique_name, tmp_path, "-E", "-n", f"{unique_name}@%h",
        app="integration.apps.events_app", env={"RABBITQ_TEST_QUEUE": unique_name},
    ):  # fmt: skip
        events_app.tasks["ev.add"].delay(1, 2)

        def inspected() -> dict[str, Any]:
            found: dict[str, Any] = flower.get("/api/workers?refresh=1").get(node, {})
            return found

        wait_for(lambda: "stats" in inspected(), 30, inspected)
        seen = inspected()
        assert "ev.add" in seen["registered"]
        assert [queue["name"] for queue in seen["active_queues"]] == [unique_name]
        assert seen["stats"]["broker"]["transport"] == "amqp" and "total" in seen["stats"]
        assert "broker_url" in seen["conf"]
        page = flower.get(f"/worker/{node}")
        assert node in page and "ev.add" in page and unique_name in page
