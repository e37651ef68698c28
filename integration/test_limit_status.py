"""``rabbitq status`` shows each global limit: what it allows (from the heartbeats of the
workers enforcing it), tokens in a rate's bucket, slots held, keys, tasks waiting."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import rabbitq
from integration.limits_support import publish, runs, workers
from integration.status_support import settled, status


@pytest.fixture
def send(broker_url: str, unique_name: str) -> Iterator[rabbitq.App]:
    app = rabbitq.App("throttled", broker=broker_url, default_queue=unique_name)
    yield app
    app.close()


def limit(snapshot: dict[str, Any], name: str) -> dict[str, Any]:
    return next((found for found in snapshot["limits"] if found["name"] == name), {})


def test_status_shows_a_concurrency_limit_s_running_and_waiting_tasks(
    broker_url: str, management_url: str, unique_name: str, tmp_path: Path, send: rabbitq.App
) -> None:
    with workers(broker_url, unique_name, tmp_path, 1, concurrency=6, killed_after=True):
        publish(send, "held", [(f"t{i}", 30.0) for i in range(8)])
        name = f"held-{unique_name}"
        snapshot = settled(
            broker_url, management_url,
            lambda s: limit(s, name).get("holders") == 3 and limit(s, name).get("waiting") == 5,
        )  # fmt: skip
        shown = limit(snapshot, name)
        assert shown["kind"] == "concurrency"
        assert shown["declared"] == {
            "name": name, "kind": "concurrency", "rate": None, "burst": None, "n": 3
        }  # fmt: skip
        assert shown["tokens"] is None and shown["refilled"] is None
        text = status(broker_url, management_url).stdout
        [line] = [line for line in text.splitlines() if line.strip().startswith(name)]
        assert line.split()[1:6] == ["concurrency", "3", "at", "once", "3/3"]
        assert len(runs(tmp_path / "ran.txt")) == 3


def test_status_shows_a_mutex_s_keys_and_holders(
    broker_url: str, management_url: str, unique_name: str, tmp_path: Path, send: rabbitq.App
) -> None:
    with workers(broker_url, unique_name, tmp_path, 1, concurrency=6, killed_after=True):
        calls = [(user, f"t{i}", 30.0) for user in ("ann", "bob") for i in range(3)]
        publish(send, "per_user", calls)
        name = f"user-{unique_name}"
        snapshot = settled(
            broker_url, management_url,
            lambda s: limit(s, name).get("holders") == 2 and limit(s, name).get("waiting") == 4,
        )  # fmt: skip
        shown = limit(snapshot, name)
        assert shown["kind"] == "mutex" and shown["keys"] == 2
        assert shown["declared"]["n"] == 1


def test_status_shows_a_rate_s_empty_bucket_its_refiller_and_the_tasks_waiting(
    broker_url: str, management_url: str, unique_name: str, tmp_path: Path, send: rabbitq.App
) -> None:
    env = {"RABBITQ_TEST_RATE": "1/h", "RABBITQ_TEST_BURST": "2"}
    with workers(broker_url, unique_name, tmp_path, 1, concurrency=4, **env):
        publish(send, "rated", [(f"t{i}",) for i in range(7)])
        name = f"rated-{unique_name}"
        snapshot = settled(
            broker_url, management_url,
            lambda s: limit(s, name).get("tokens") == 0
            and limit(s, name).get("waiting", 0) + limit(s, name).get("taken", 0) == 5,
        )  # fmt: skip
        shown = limit(snapshot, name)
        assert shown["kind"] == "rate" and shown["refilled"] is True
        assert shown["declared"]["rate"] == "1/h" and shown["declared"]["burst"] == 2
        assert shown["taken"] <= 4  # at most the worker's concurrency waits in its memory
        assert len(runs(tmp_path / "ran.txt")) == 2
