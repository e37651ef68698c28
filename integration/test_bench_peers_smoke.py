"""`benchmarks/bench_peers.py` runs end to end: a smoke run with small counts against the test
broker, Dramatiq built in its own venv. The figures are the benchmark's business, never a
test's (these machines are shared and noisy); this only shows every side still runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.skipif(
    bool(os.environ.get("RABBITQ_TEST_BROKER_PASS")),
    reason="the first pass makes the smoke run; it shows the bench runs, not a broker version",
)
def test_the_peer_benchmark_runs_every_side_and_prints_its_ratios(broker_url: str) -> None:
    finished = subprocess.run(
        [sys.executable, "benchmarks/bench_peers.py", "--quick", "--broker", broker_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    lines = [line for line in finished.stdout.splitlines() if " ratio " in line]
    assert [line.split(" ours ")[0].strip() for line in lines] == [
        "drain sync no-op, 2 procs vs Dramatiq -p 2",
        "drain async no-op, 2 procs vs aiormq 2 procs",
        "delay() 1 thread vs Dramatiq send()",
        "send-to-start p50 at 100/s vs Dramatiq",
        "send-to-start p99 at 100/s vs Dramatiq",
    ]
