"""A worker's log records say which task wrote them, in plain text or JSON (docs/worker.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from integration.apps import logging_app
from integration.support import running_worker, wait_for
from rabbitq import chain

# Log records, not the broker: once, in the first pass.
pytestmark = pytest.mark.first_pass_only


@pytest.fixture
def queue(broker_url: str, unique_name: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(logging_app.app, "broker_url", broker_url)
    logging_app.app._declare_once.reset()
    logging_app.app.ensure_queue(unique_name)
    return unique_name


def _records(log: str) -> list[dict[str, Any]]:
    lines = [line for line in log.splitlines() if line.startswith("{")]
    return [json.loads(line) for line in lines]


def _said(log: str, text: str) -> list[dict[str, Any]]:
    return [r for r in _records(log) if r["logger"] == "shop.orders" and r["message"] == text]


def _wait_said(worker: Any, text: str, count: int = 1) -> list[dict[str, Any]]:
    wait_for(lambda: len(_said(worker.log(), text)) >= count, 30, worker.log)
    return _said(worker.log(), text)


APP = "integration.apps.logging_app"


def test_a_user_loggers_record_carries_the_task_in_json(
    broker_url: str, queue: str, tmp_path: Path
) -> None:
    with running_worker(broker_url, queue, tmp_path, "--log-format", "json", app=APP) as w:
        sent = logging_app.say.apply_async(("hello",), queue=queue)
        [record] = _wait_said(w, "saying hello")
    assert record["task_id"] == sent.id and record["task_name"] == "logs.say"
    assert record["task_queue"] == queue and record["task_retries"] == 0
    assert record["task_root_id"] == sent.id and record["task_parent_id"] is None
    assert record["level"] == "INFO" and isinstance(record["process"], int)


def test_an_async_tasks_record_carries_the_task_in_json(
    broker_url: str, queue: str, tmp_path: Path
) -> None:
    with running_worker(broker_url, queue, tmp_path, "--log-format", "json", app=APP) as w:
        sent = logging_app.asay.apply_async(("hi",), queue=queue)
        [record] = _wait_said(w, "saying hi")
    assert record["task_id"] == sent.id and record["task_name"] == "logs.asay"


def test_the_workers_own_lines_outside_a_task_are_json_without_task_fields(
    broker_url: str, queue: str, tmp_path: Path
) -> None:
    with running_worker(broker_url, queue, tmp_path, "--log-format", "json", app=APP) as w:
        log = w.log()
    consuming = [r for r in _records(log) if "consuming" in r["message"]]
    assert consuming and "task_id" not in consuming[0]


def test_a_retry_keeps_the_task_id_and_counts_its_retries(
    broker_url: str, queue: str, tmp_path: Path
) -> None:
    with running_worker(broker_url, queue, tmp_path, "--log-format", "json", app=APP) as w:
        sent = logging_app.flaky.apply_async(("again",), queue=queue)
        [second] = _wait_said(w, "attempt 1 of again")
        [first] = _said(w.log(), "attempt 0 of again")
    assert first["task_id"] == second["task_id"] == sent.id
    assert (first["task_retries"], second["task_retries"]) == (0, 1)
    assert first["task_root_id"] == second["task_root_id"] == sent.id


def test_a_chain_step_carries_the_workflows_root_and_its_parent(
    broker_url: str, queue: str, tmp_path: Path
) -> None:
    with running_worker(broker_url, queue, tmp_path, "--log-format", "json", app=APP) as w:
        workflow = chain(
            logging_app.say.si("one").set(queue=queue), logging_app.say.si("two").set(queue=queue)
        )
        result = workflow.apply_async()
        [two] = _wait_said(w, "saying two")
        [one] = _said(w.log(), "saying one")
    assert two["task_id"] == result.id
    assert two["task_root_id"] == one["task_id"] == one["task_root_id"]
    assert two["task_parent_id"] == one["task_id"]


def test_a_task_sent_with_a_countdown_from_a_task_carries_its_trace(
    broker_url: str, queue: str, tmp_path: Path
) -> None:
    with running_worker(broker_url, queue, tmp_path, "--log-format", "json", app=APP) as w:
        sent = logging_app.spawn.apply_async(("child",), queue=queue)
        [child] = _wait_said(w, "saying child")
    assert child["task_root_id"] == sent.id and child["task_parent_id"] == sent.id
    assert child["task_id"] != sent.id


def test_the_plain_format_names_the_task_on_its_lines(
    broker_url: str, queue: str, tmp_path: Path
) -> None:
    with running_worker(broker_url, queue, tmp_path, app=APP) as w:
        sent = logging_app.say.apply_async(("plainly",), queue=queue)
        line = f"shop.orders: logs.say[{sent.id}]: saying plainly"
        wait_for(lambda: line in w.log(), 30, w.log)


def test_the_apps_log_format_applies_without_the_option(
    broker_url: str, queue: str, tmp_path: Path
) -> None:
    env = {"RABBITQ_TEST_LOG_FORMAT": "json"}
    with running_worker(broker_url, queue, tmp_path, env=env, app=APP) as w:
        sent = logging_app.say.apply_async(("configured",), queue=queue)
        [record] = _wait_said(w, "saying configured")
    assert record["task_id"] == sent.id


def test_the_option_wins_over_the_apps_log_format(
    broker_url: str, queue: str, tmp_path: Path
) -> None:
    env = {"RABBITQ_TEST_LOG_FORMAT": "json"}
    with running_worker(
        broker_url, queue, tmp_path, "--log-format", "plain", env=env, app=APP
    ) as w:
        sent = logging_app.say.apply_async(("plain again",), queue=queue)
        line = f"logs.say[{sent.id}]: saying plain again"
        wait_for(lambda: line in w.log(), 30, w.log)
    assert not _records(w.log())
