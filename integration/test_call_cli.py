"""`rabbitq call TASK` against a real broker."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from integration.cli_support import app_module, run_cli
from integration.support import drain_queue, queue_depth, ran_ids, running_worker, wait_for
from rabbitq.message import TaskMessage, decode_task, envelope_from_properties, utcnow
from rabbitq.testing import free_port

# Argument handling and send_task, not the broker's version: once, in the first pass.
pytestmark = pytest.mark.first_pass_only

DEAD_BROKER = "amqp://guest:guest@127.0.0.1:{port}/"


def _sent(broker_url: str, queue: str) -> list[TaskMessage]:
    return [
        decode_task(envelope_from_properties(properties, body))
        for properties, body in drain_queue(broker_url, queue)
    ]


def test_call_sends_a_task_the_app_does_not_know_and_prints_only_its_id(
    broker_url: str, unique_name: str, tmp_path: Path
) -> None:
    # No -A: a plain App, in which `it.record` is not registered; the worker's app has it.
    result = run_cli("call", "it.record", "--args", '["hello"]', "--queue", unique_name,
                     "--broker", broker_url)  # fmt: skip
    assert result.returncode == 0, result.stderr
    task_id = result.stdout.strip()
    assert result.stdout == f"{task_id}\n"
    with running_worker(broker_url, unique_name, tmp_path):
        wait_for(lambda: ran_ids(tmp_path / "ran.txt")[task_id] == 1, 30)


def test_the_task_is_in_its_queue_when_call_returns(broker_url: str, unique_name: str) -> None:
    result = run_cli("call", "shop.anything", "--queue", unique_name, "--broker", broker_url)
    assert result.returncode == 0, result.stderr
    assert queue_depth(broker_url, unique_name) == 1  # confirmed before the id was printed


def test_args_and_kwargs_are_the_tasks_arguments(broker_url: str, unique_name: str) -> None:
    result = run_cli("call", "shop.add", "-a", '[2, "x"]', "-k", '{"b": {"c": [1]}}',
                     "--queue", unique_name, "--broker", broker_url)  # fmt: skip
    assert result.returncode == 0, result.stderr
    [message] = _sent(broker_url, unique_name)
    assert (message.task, message.args, message.kwargs) == ("shop.add", [2, "x"], {"b": {"c": [1]}})


def test_countdown_holds_the_task_back(broker_url: str, unique_name: str) -> None:
    sent = time.monotonic()
    result = run_cli("call", "shop.later", "--countdown", "3", "--queue", unique_name,
                     "--broker", broker_url)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert queue_depth(broker_url, unique_name) == 0
    wait_for(lambda: queue_depth(broker_url, unique_name) == 1, 30)
    assert time.monotonic() - sent >= 3


def test_eta_with_an_offset_sets_when_the_task_may_run(broker_url: str, unique_name: str) -> None:
    eta = (utcnow() + dt.timedelta(seconds=2)).replace(microsecond=0)
    result = run_cli("call", "shop.later", "--eta", eta.isoformat().replace("+00:00", "Z"),
                     "--queue", unique_name, "--broker", broker_url)  # fmt: skip
    assert result.returncode == 0, result.stderr
    wait_for(lambda: queue_depth(broker_url, unique_name) == 1, 30)
    [message] = _sent(broker_url, unique_name)
    assert message.eta == eta


def test_an_eta_without_an_offset_is_refused_naming_the_option(broker_url: str) -> None:
    result = run_cli("call", "shop.later", "--eta", "2030-01-31T09:00:00", "--broker", broker_url)
    assert result.returncode == 2
    assert "Invalid value for --eta" in result.stderr
    assert "has no UTC offset" in result.stderr


def test_an_eta_that_is_not_a_time_is_refused_naming_the_option(broker_url: str) -> None:
    result = run_cli("call", "shop.later", "--eta", "tomorrow", "--broker", broker_url)
    assert result.returncode == 2
    assert "Invalid value for --eta: not an ISO 8601 time" in result.stderr


def test_countdown_and_eta_together_are_refused(broker_url: str) -> None:
    result = run_cli("call", "shop.later", "--countdown", "5", "--eta", "2030-01-31T09:00:00Z",
                     "--broker", broker_url)  # fmt: skip
    assert result.returncode == 2
    assert "give --countdown or --eta, not both" in result.stderr


def test_bad_json_in_args_is_an_error_naming_the_option(broker_url: str) -> None:
    result = run_cli("call", "shop.add", "--args", "[2, 3", "--broker", broker_url)
    assert result.returncode == 2
    assert "Invalid value for --args: not valid JSON" in result.stderr


def test_bad_json_in_kwargs_is_an_error_naming_the_option(broker_url: str) -> None:
    result = run_cli("call", "shop.add", "--kwargs", "{b: 3}", "--broker", broker_url)
    assert result.returncode == 2
    assert "Invalid value for --kwargs: not valid JSON" in result.stderr


def test_args_must_be_an_array_and_kwargs_an_object(broker_url: str) -> None:
    args = run_cli("call", "shop.add", "--args", '{"a": 1}', "--broker", broker_url)
    assert args.returncode == 2
    assert "Invalid value for --args: must be a JSON array" in args.stderr
    kwargs = run_cli("call", "shop.add", "--kwargs", "[1]", "--broker", broker_url)
    assert kwargs.returncode == 2
    assert "Invalid value for --kwargs: must be a JSON object" in kwargs.stderr


def test_an_unroutable_task_is_an_error_and_exits_non_zero(
    broker_url: str, unique_name: str
) -> None:
    result = run_cli("call", "shop.add", "--routing-key", f"{unique_name}.nobody",
                     "--broker", broker_url)  # fmt: skip
    assert result.returncode == 1
    assert f"no queue is bound to exchange 'rabbitq' for routing key '{unique_name}.nobody'" in (
        result.stderr
    )
    assert "the task was not enqueued" in result.stderr
    assert result.stdout == ""


def _routed_app(tmp_path: Path, unique_name: str, broker: str) -> dict[str, str]:
    routing = tmp_path / "routing.yaml"
    routing.write_text(
        f"queues:\n  {unique_name}:\n    bindings: ['{unique_name}.#']\n"
        f"tasks:\n  'shop.*': {unique_name}.work\n"
    )
    return app_module(
        tmp_path,
        f"app_{unique_name}",
        f"import rabbitq\napp = rabbitq.App('shop', broker={broker!r}, routing={str(routing)!r})\n",
    )


def test_the_apps_routing_file_says_where_the_task_goes(
    broker_url: str, unique_name: str, tmp_path: Path
) -> None:
    env = _routed_app(tmp_path, unique_name, broker_url)
    applied = run_cli("topology", "apply", str(tmp_path / "routing.yaml"), "--broker", broker_url)
    assert applied.returncode == 0, applied.stderr
    result = run_cli("call", "shop.add", "-A", f"app_{unique_name}", env=env)
    assert result.returncode == 0, result.stderr
    [message] = _sent(broker_url, unique_name)
    assert message.id == result.stdout.strip()


def test_routing_names_a_routing_file_for_an_app_not_given(
    broker_url: str, unique_name: str, tmp_path: Path
) -> None:
    _routed_app(tmp_path, unique_name, broker_url)  # only for its routing.yaml
    routing = str(tmp_path / "routing.yaml")
    assert run_cli("topology", "apply", routing, "--broker", broker_url).returncode == 0
    result = run_cli("call", "shop.add", "--routing", routing, "--broker", broker_url)
    assert result.returncode == 0, result.stderr
    [message] = _sent(broker_url, unique_name)
    assert message.id == result.stdout.strip()


def test_rabbitq_routing_names_the_routing_file_too(
    broker_url: str, unique_name: str, tmp_path: Path
) -> None:
    _routed_app(tmp_path, unique_name, broker_url)  # only for its routing.yaml
    routing = str(tmp_path / "routing.yaml")
    assert run_cli("topology", "apply", routing, "--broker", broker_url).returncode == 0
    result = run_cli("call", "shop.add", "--broker", broker_url, env={"RABBITQ_ROUTING": routing})
    assert result.returncode == 0, result.stderr
    [message] = _sent(broker_url, unique_name)
    assert message.id == result.stdout.strip()


def test_the_app_module_is_found_from_the_current_directory(
    broker_url: str, unique_name: str, tmp_path: Path
) -> None:
    source = f"import rabbitq\napp = rabbitq.App(broker={broker_url!r})\n"
    (tmp_path / f"app_{unique_name}.py").write_text(source)
    script = Path(sys.executable).parent / "rabbitq"  # the installed command, not python -m
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [str(script), "call", "shop.add", "--queue", unique_name, "-A", f"app_{unique_name}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, env=environment,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert queue_depth(broker_url, unique_name) == 1


def test_a_route_in_the_apps_routing_that_no_queue_binds_is_unroutable(
    broker_url: str, unique_name: str, tmp_path: Path
) -> None:
    env = _routed_app(tmp_path, unique_name, broker_url)  # its topology never applied
    result = run_cli("call", "shop.add", "-A", f"app_{unique_name}", env=env)
    assert result.returncode == 1
    assert f"routing key '{unique_name}.work'" in result.stderr


def test_the_apps_broker_is_used_over_the_environments(
    broker_url: str, unique_name: str, tmp_path: Path
) -> None:
    env = app_module(
        tmp_path,
        f"app_{unique_name}",
        f"import rabbitq\napp = rabbitq.App(broker={broker_url!r})\n",
    )
    env["RABBITQ_BROKER_URL"] = DEAD_BROKER.format(port=free_port())
    result = run_cli(
        "call", "shop.add", "--queue", unique_name, "-A", f"app_{unique_name}", env=env
    )
    assert result.returncode == 0, result.stderr
    assert queue_depth(broker_url, unique_name) == 1


def test_broker_typed_on_the_command_line_wins_over_the_apps(
    broker_url: str, unique_name: str, tmp_path: Path
) -> None:
    dead = DEAD_BROKER.format(port=free_port())
    env = app_module(
        tmp_path, f"app_{unique_name}", f"import rabbitq\napp = rabbitq.App(broker={dead!r})\n"
    )
    result = run_cli("call", "shop.add", "--queue", unique_name, "-A", f"app_{unique_name}",
                     "--broker", broker_url, env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert queue_depth(broker_url, unique_name) == 1


def test_an_unreachable_broker_is_an_error_once_the_apps_publish_timeout_passes(
    unique_name: str, tmp_path: Path
) -> None:
    dead = DEAD_BROKER.format(port=free_port())
    source = f"import rabbitq\napp = rabbitq.App(broker={dead!r}, publish_timeout=1)\n"
    env = app_module(tmp_path, f"app_{unique_name}", source)
    result = run_cli(
        "call", "shop.add", "--queue", unique_name, "-A", f"app_{unique_name}", env=env
    )
    assert result.returncode == 1
    assert "not connected to the broker" in result.stderr
    assert "Connection refused" in result.stderr


def test_with_the_rpc_backend_no_result_is_asked_for_and_call_says_why(
    broker_url: str, unique_name: str
) -> None:
    result = run_cli("call", "shop.add", "--queue", unique_name, "--broker", broker_url,
                     env={"RABBITQ_RESULT_BACKEND": "rpc://"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "only the sending process can read an rpc result" in result.stderr
    [(properties, _)] = drain_queue(broker_url, unique_name)
    assert properties.reply_to is None


def test_without_a_result_backend_call_says_the_result_will_not_be_stored(
    broker_url: str, unique_name: str
) -> None:
    result = run_cli("call", "shop.add", "--queue", unique_name, "--broker", broker_url,
                     env={"RABBITQ_RESULT_BACKEND": ""})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "no result backend here, so the task's result will not be stored" in result.stderr
    [message] = _sent(broker_url, unique_name)
    assert message.ignore_result
