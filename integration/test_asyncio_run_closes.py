"""``asyncio.run(task.adelay(...))`` closes the connection it opened when its loop ends."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from integration.support import drain_queue, wait_for
from rabbitq.amqp.management import ManagementClient

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def script(broker_url: str, unique_name: str) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-X", "dev", "-m", "integration.apps.asyncio_run_publish",
         broker_url, unique_name],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline().strip() == "ready", process.stderr.read()
    yield process
    process.kill()
    process.wait(10)


def connection_names(management_url: str) -> set[str]:
    connections = ManagementClient(management_url).get("/api/connections")
    return {c.get("client_properties", {}).get("connection_name", "") for c in connections}


def test_asyncio_run_that_published_leaves_no_open_connection(
    script: subprocess.Popen[str], management_url: str, broker_url: str, unique_name: str
) -> None:
    # The broker lists connections in the order it saw them open: once it lists the marker
    # (opened after asyncio.run returned), a publisher connection still open would be listed.
    wait_for(lambda: f"marker-{script.pid}" in connection_names(management_url), 30)
    assert f"rabbitq-async-publisher-{script.pid}" not in connection_names(management_url)
    assert len(drain_queue(broker_url, unique_name)) == 1


def test_asyncio_run_that_published_warns_of_nothing_unclosed(
    script: subprocess.Popen[str],
) -> None:
    # -X dev shows ResourceWarnings and asyncio's "Task was destroyed but it is pending!".
    script.kill()
    _, stderr = script.communicate(timeout=10)
    assert "Unclosed" not in stderr and "unclosed" not in stderr, stderr
    assert "Task was destroyed" not in stderr, stderr
