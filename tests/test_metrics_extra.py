"""prometheus-client is the ``rabbitq[metrics]`` extra: nothing loads it but the metrics
modules, and those say how to install it when it is missing."""

from __future__ import annotations

import subprocess
import sys

import pytest


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


@pytest.mark.parametrize(
    "module", ["rabbitq", "rabbitq.worker.process", "rabbitq.worker.supervisor", "rabbitq.cli.main"]
)
def test_importing_rabbitq_without_asking_for_metrics_loads_no_prometheus_client(
    module: str,
) -> None:
    out = run(f"import sys, {module}; print('prometheus_client' in sys.modules)")
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.parametrize(
    "module", ["rabbitq.metrics.worker_metrics", "rabbitq.metrics.queue_gauges"]
)
def test_the_metrics_without_the_extra_say_to_install_rabbitq_metrics(module: str) -> None:
    # None in sys.modules makes the import fail, as if the package were not installed.
    out = run(f"import sys; sys.modules['prometheus_client'] = None; import {module}")
    assert out.returncode != 0
    assert "MissingExtraError" in out.stderr and "rabbitq[metrics]" in out.stderr
