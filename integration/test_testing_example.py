"""docs/testing.md's worked example (examples/testing) passes as a user runs it: pytest with
rabbitq's plugin, its fixtures on the in-memory broker and on this session's RabbitMQ."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
