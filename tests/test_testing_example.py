"""docs/testing.md's worked example needs no broker for its in-memory half: run as a user
runs it (pytest, rabbitq's plugin found by its entry point), with no RabbitMQ anywhere."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "testing"


def test_the_testing_example_s_in_memory_tests_pass_without_a_broker() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RABBITQ_")}
    env["RABBITQ_BROKER_URL"] = "amqp://guest:guest@127.0.0.1:1/"  # nothing listens there
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not rabbitmq"],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "6 passed, 2 deselected" in done.stdout
