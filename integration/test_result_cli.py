"""`rabbitq result ID` against real result backends (Redis, PostgreSQL) and a real worker."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from integration.cli_support import app_module, run_cli
from integration.support import running_worker
from rabbitq.errors import TaskRevokedError
from rabbitq.results.meta import RETRY, STARTED, encode_meta, revoked, state_only
from rabbitq.results.redis import result_key
from rabbitq.serializers import JSON
from rabbitq.testing import free_port

# The result backends and the command line, not the broker: once, in the first pass.
pytestmark = pytest.mark.first_pass_only

EX_TEMPFAIL = 75


@dataclass(frozen=True)
class Served:
    """A canvas_app worker on ``queue`` that keeps results in ``backend``."""

    broker_url: str
    queue: str
    backend: str

    def call(self, task: str, args: str) -> str:
        sent = run_cli("call", task, "--args", args, "--queue", self.queue,
                       "--broker", self.broker_url,
                       env={"RABBITQ_RESULT_BACKEND": self.backend})  # fmt: skip
        assert sent.returncode == 0, sent.stderr
        return sent.stdout.strip()


@pytest.fixture(scope="module", params=["redis", "postgres"])
def served(
    request: pytest.FixtureRequest, broker_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    backend = request.getfixturevalue(f"{request.param}_url")
    queue = f"t{uuid.uuid4().hex[:10]}"
    env = {"RABBITQ_TEST_QUEUE": queue, "RABBITQ_RESULT_BACKEND": backend}
    tmp_path = tmp_path_factory.mktemp(f"result-{request.param}")
    with running_worker(broker_url, queue, tmp_path, env=env, app="integration.apps.canvas_app"):
        yield Served(broker_url, queue, backend)


def test_a_finished_task_prints_success_and_its_result_as_json(served: Served) -> None:
    task_id = served.call("cv.echo", '[{"total": 5, "items": ["a", null]}]')
    result = run_cli("result", task_id, "--backend", served.backend, "--timeout", "30")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == ["state: SUCCESS", 'result: {"total": 5, "items": ["a", null]}']
    assert lines[2].startswith("date_done: ")


def test_a_failed_task_prints_its_error_and_traceback_and_exits_1(served: Served) -> None:
    task_id = served.call("cv.fail", '["boom"]')
    result = run_cli("result", task_id, "--backend", served.backend, "--timeout", "30")
    assert result.returncode == 1
    assert result.stdout.startswith("state: FAILURE\nerror: ValueError: boom\n")
    assert "raise ValueError(message)" in result.stdout


def test_json_prints_the_whole_result_document(served: Served) -> None:
    task_id = served.call("cv.add", "[2, 3]")
    result = run_cli("result", task_id, "--backend", served.backend, "--timeout", "30", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["task_id"] == task_id
    assert (document["status"], document["result"], document["traceback"]) == ("SUCCESS", 5, None)
    assert set(document) == {"task_id", "status", "result", "traceback", "children", "date_done"}


def test_an_unknown_id_is_reported_pending_and_exits_75(redis_url: str) -> None:
    result = run_cli("result", str(uuid.uuid4()), "--backend", redis_url)
    assert result.returncode == EX_TEMPFAIL
    assert result.stdout == "state: PENDING\n"
    assert "no result is stored for this id" in result.stderr


def test_timeout_waits_that_long_for_a_final_state(redis_url: str) -> None:
    started = time.monotonic()
    result = run_cli("result", str(uuid.uuid4()), "--backend", redis_url, "--timeout", "1.5")
    assert time.monotonic() - started >= 1.5
    assert result.returncode == EX_TEMPFAIL
    assert "not ready (waited 1.5s)" in result.stderr


def test_a_revoked_task_prints_why_and_exits_1(redis_url: str) -> None:
    task_id = str(uuid.uuid4())
    meta = revoked(task_id, TaskRevokedError("revoked by ops"))
    redis.Redis.from_url(redis_url).set(result_key(task_id), encode_meta(meta, JSON), ex=60)
    result = run_cli("result", task_id, "--backend", redis_url)
    assert result.returncode == 1
    assert result.stdout.startswith("state: REVOKED\nerror: TaskRevokedError: revoked by ops\n")


@pytest.mark.parametrize("state", [STARTED, RETRY])
def test_a_started_or_retrying_task_is_not_ready_and_exits_75(redis_url: str, state: str) -> None:
    task_id = str(uuid.uuid4())
    meta = state_only(task_id, state)
    redis.Redis.from_url(redis_url).set(result_key(task_id), encode_meta(meta, JSON), ex=60)
    result = run_cli("result", task_id, "--backend", redis_url)
    assert result.returncode == EX_TEMPFAIL
    assert result.stdout.startswith(f"state: {state}\n")
    assert "not ready: the task has not finished" in result.stderr


def test_the_backend_comes_from_the_environment_without_backend(redis_url: str) -> None:
    result = run_cli("result", str(uuid.uuid4()), env={"RABBITQ_RESULT_BACKEND": redis_url})
    assert result.returncode == EX_TEMPFAIL, result.stderr
    assert result.stdout == "state: PENDING\n"


def test_the_backend_comes_from_the_app_given_with_a(redis_url: str, tmp_path: Path) -> None:
    source = f"import rabbitq\napp = rabbitq.App(result_backend={redis_url!r})\n"
    env = app_module(tmp_path, "result_app", source)
    env["RABBITQ_RESULT_BACKEND"] = ""
    result = run_cli("result", str(uuid.uuid4()), "-A", "result_app", env=env)
    assert result.returncode == EX_TEMPFAIL, result.stderr
    assert result.stdout == "state: PENDING\n"


def test_the_rpc_backend_is_refused_saying_why() -> None:
    given = run_cli("result", str(uuid.uuid4()), "--backend", "rpc://")
    from_env = run_cli("result", str(uuid.uuid4()), env={"RABBITQ_RESULT_BACKEND": "rpc://"})
    for result in (given, from_env):
        assert result.returncode == 1
        assert "the rpc:// result backend cannot answer here" in result.stderr
        assert "only that process can read it" in result.stderr


def test_without_a_backend_result_says_how_to_give_one() -> None:
    result = run_cli("result", str(uuid.uuid4()), env={"RABBITQ_RESULT_BACKEND": ""})
    assert result.returncode == 1
    assert "no result backend: give --backend URL" in result.stderr


def test_a_backend_that_does_not_answer_is_an_error() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    result = run_cli("result", str(uuid.uuid4()), "--backend", url)
    assert result.returncode == 1
    assert f"the Redis result backend at {url} did not answer" in result.stderr
