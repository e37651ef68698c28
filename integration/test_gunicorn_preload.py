"""gunicorn with examples/gunicorn.conf.py (``preload_app``, 2 workers): the master publishes
while loading the app, then both forked workers publish on connections of their own, and every
task runs on a real worker."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from integration.support import REPO_ROOT, ran_labels, running_worker, wait_for
from integration.web_support import free_port, serving

# gunicorn's preload and fork, not the broker's version: once, in the first pass.
pytestmark = pytest.mark.first_pass_only

pytest.importorskip("gunicorn")


def test_the_master_and_both_preloaded_gunicorn_workers_each_publish(
    broker_url: str, tmp_path: Path, unique_name: str
) -> None:
    env = {"RABBITQ_BROKER_URL": broker_url, "PRELOAD_TEST_QUEUE": unique_name}
    port = free_port()
    config = str(REPO_ROOT / "examples" / "gunicorn.conf.py")
    gunicorn = [
        sys.executable, "-m", "gunicorn", "-c", config, "--bind", f"127.0.0.1:{port}",
        "--workers", "2", "integration.apps.preload_wsgi:application",
    ]  # fmt: skip
    with (
        running_worker(broker_url, unique_name, tmp_path, env=env) as worker,
        serving(gunicorn, port, tmp_path / "gunicorn.log", env) as server,
    ):
        url = f"http://127.0.0.1:{port}/publish"
        serving_pids: set[str] = set()
        with ThreadPoolExecutor(8) as pool:
            for _ in range(20):  # until both workers answered (the kernel picks who accepts)
                replies = list(pool.map(lambda _: httpx.get(url, timeout=10), range(8)))
                assert all(reply.status_code == 200 for reply in replies), server.log()
                serving_pids |= {reply.text for reply in replies}
                if len(serving_pids) == 2:
                    break
        assert len(serving_pids) == 2, server.log()
        wanted = {f"request-{pid}" for pid in serving_pids}
        record = tmp_path / "ran.txt"
        wait_for(
            lambda: wanted <= set(ran_labels(record)),
            30,
            lambda: f"ran {sorted(set(ran_labels(record)))}; worker log:\n{worker.log()[-2000:]}",
        )
        preloaded = [label for label in ran_labels(record) if label.startswith("preloaded-")]
        assert preloaded == [f"preloaded-{server.pid}"]  # the master's own, once
        assert "Traceback" not in server.log(), server.log()
