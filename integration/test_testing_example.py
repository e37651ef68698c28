"""docs/testing.md's worked example (examples/testing) passes as a user runs it: pytest with
rabbitq's plugin, its fixtures on the in-memory broker and on this session's RabbitMQ."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# The testing helpers, not the broker's version: once, in the first pass.
pytestmark = pytest.mark.first_pass_only

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "testing"


def test_the_testing_example_passes_on_both_brokers(broker_url: str) -> None:
    env = {**os.environ, "RABBITQ_TEST_URL": broker_url}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "8 passed" in done.stdout


def test_rabbitq_worker_purges_what_an_earlier_test_left_in_its_queues(
    broker_url: str, tmp_path: Path
) -> None:
    (tmp_path / "leftover_app.py").write_text(
        "import rabbitq\n"
        "app = rabbitq.App('leftover', default_queue='leftover')\n"
        "ran = []\n"
        "@app.task\n"
        "def note(x):\n"
        "    ran.append(x)\n"
    )
    (tmp_path / "test_leftover.py").write_text(
        "from leftover_app import app, note, ran\n"
        "def test_first_publishes_and_never_drains(rabbitq_broker):\n"
        "    app.use_broker(rabbitq_broker.url)\n"
        "    note.delay('left behind')\n"
        "    app.use_broker('amqp://guest:guest@127.0.0.1:1/')\n"
        "def test_second_sees_only_its_own(rabbitq_worker):\n"
        "    note.delay('mine')\n"
        "    rabbitq_worker.join()\n"
        "    assert ran == ['mine']\n"
    )
    env = {**os.environ, "RABBITQ_TEST_URL": broker_url}
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"),
            *("--rabbitq-app", "leftover_app:app", "-o", "pythonpath=."),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "2 passed" in done.stdout
