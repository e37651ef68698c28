"""`rabbitq topology apply|show` and `rabbitq worker` against a real broker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pika

from integration.support import REPO_ROOT


def rabbitq_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rabbitq", *args],
        cwd=REPO_ROOT,
        text=True,
        capture_output=True,
        timeout=60,
        env=env,
    )


def _routing(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "routing.yaml"
    path.write_text(text)
    return path


def test_apply_declares_queues_with_their_arguments_and_bindings(
    broker_url: str, unique_name: str, tmp_path: Path
) -> None:
    routing = _routing(
        tmp_path,
        f"""
queues:
  {unique_name}:
    type: quorum
    bindings: ["{unique_name}.#", "other.{unique_name}.*"]
    max_length: 1000
    overflow: reject-publish
""",
    )
    result = rabbitq_cli("topology", "apply", str(routing), "--broker", broker_url)
    assert result.returncode == 0, result.stderr
    assert f"queue {unique_name} (quorum)" in result.stdout
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()
    channel.confirm_delivery()
    channel.basic_publish("rabbitq", f"other.{unique_name}.x", b"", mandatory=True)
    assert channel.queue_declare(unique_name, passive=True).method.message_count == 1
    connection.close()


def test_apply_twice_is_idempotent(broker_url: str, unique_name: str, tmp_path: Path) -> None:
    routing = _routing(tmp_path, f"queues:\n  {unique_name}:\n    max_priority: 5\n")
    for _ in range(2):
        result = rabbitq_cli("topology", "apply", str(routing), "--broker", broker_url)
        assert result.returncode == 0, result.stderr


def test_conflicting_queue_arguments_are_reported_clearly(
    broker_url: str, unique_name: str, tmp_path: Path
) -> None:
    first = _routing(tmp_path, f"queues:\n  {unique_name}:\n    type: classic\n")
    assert rabbitq_cli("topology", "apply", str(first), "--broker", broker_url).returncode == 0
    second = _routing(tmp_path, f"queues:\n  {unique_name}:\n    type: quorum\n")
    result = rabbitq_cli("topology", "apply", str(second), "--broker", broker_url)
    assert result.returncode != 0
    assert f"queue '{unique_name}' already exists with different arguments" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_routing_file_names_the_line(broker_url: str, tmp_path: Path) -> None:
    routing = _routing(tmp_path, "queues:\n  emails:\n    max_lenght: 10\n")
    result = rabbitq_cli("topology", "apply", str(routing), "--broker", broker_url)
    assert result.returncode != 0
    assert f"{routing}:3: unknown key 'max_lenght'" in result.stderr


def test_worker_with_invalid_routing_file_exits_naming_the_line(
    broker_url: str, tmp_path: Path
) -> None:
    routing = _routing(tmp_path, "queues:\n  emails:\n    type: lazy\n")
    result = rabbitq_cli(
        "worker",
        "-A",
        "integration.apps.core_app",
        "-Q",
        "emails",
        "--routing",
        str(routing),
        env={"RABBITQ_BROKER_URL": broker_url, "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode != 0
    assert f"{routing}:3:" in result.stderr and "classic, quorum" in result.stderr


def test_show_lists_queues_depth_consumers_and_bindings(
    broker_url: str, management_url: str, unique_name: str, tmp_path: Path
) -> None:
    routing = _routing(tmp_path, f'queues:\n  {unique_name}:\n    bindings: ["{unique_name}.#"]\n')
    rabbitq_cli("topology", "apply", str(routing), "--broker", broker_url)
    result = rabbitq_cli(
        "topology", "show", "--broker", broker_url, "--management-url", management_url
    )
    assert result.returncode == 0, result.stderr
    assert "rabbitq" in result.stdout and "topic" in result.stdout
    [line] = [
        row for row in result.stdout.splitlines() if row.strip().startswith(unique_name + " ")
    ]
    assert f"{unique_name}.#" in line
    assert any(row.strip().startswith(unique_name + ".dead") for row in result.stdout.splitlines())
