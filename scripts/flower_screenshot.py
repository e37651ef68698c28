"""Redraw docs/images/flower-*.png: a real Flower watching a rabbitq worker, photographed.

A throwaway broker (or ``--broker URL``), a rabbitq worker with task events (``-E``), Flower 2
from the test venv, a mix of tasks (succeeded, failed, retried, a coroutine), then Debian's
headless Chromium photographs Flower's tasks and workers pages. Run from the repository:

    .venv/bin/python scripts/flower_screenshot.py [--broker URL] [--out docs/images]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
QUEUE = f"flower-demo-{uuid.uuid4().hex[:8]}"  # nothing left from an earlier run
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--window-size=1400,900", "--virtual-time-budget=10000",
]  # fmt: skip


def wait_for(check: Callable[[], bool], seconds: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"flower_screenshot: gave up waiting for {what()}")


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def started(stack: ExitStack, argv: list[str], log: Path, env: dict[str, str]) -> None:
    handle = stack.enter_context(log.open("wb"))
    process = subprocess.Popen(
        argv, cwd=REPO, env={**os.environ, **env}, stdout=handle, stderr=subprocess.STDOUT
    )

    def stop() -> None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    stack.callback(stop)


def photograph(chromium: str, url: str, path: Path, profile: Path) -> None:
    subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={path}", url],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=120,
    )
    if not path.exists() or path.stat().st_size == 0:
        raise SystemExit(f"flower_screenshot: chromium wrote no {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", help="a running broker (default: a throwaway local node)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    options = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("flower_screenshot: needs Chromium (apt-get install chromium)")

    sys.path.insert(0, str(REPO))
    from rabbitq.testing import LocalBroker, free_port

    with ExitStack() as stack, tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        broker_url = options.broker
        if broker_url is None:
            broker_url = stack.enter_context(LocalBroker()).url
        os.environ["RABBITQ_TEST_QUEUE"] = QUEUE
        from integration.apps.events_app import app

        app.broker_url = broker_url
        port = free_port()
        started(
            stack,
            [sys.executable, "-m", "celery", "--broker", broker_url, "flower",
             f"--port={port}", "--address=127.0.0.1"],
            work / "flower.log",
            {"FLOWER_UNAUTHENTICATED_API": "true"},
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: get_text(base + "/healthcheck") == "OK", 60, lambda: "Flower")
        started(
            stack,
            [sys.executable, "-m", "rabbitq", "worker", "-A",
             "integration.apps.events_app", "-Q", QUEUE, "-E", "-n", "demo@%h"],
            work / "worker.log",
            {"RABBITQ_TEST_QUEUE": QUEUE, "RABBITQ_BROKER_URL": broker_url},
        )  # fmt: skip
        ids = [app.tasks["ev.add"].delay(i, i * 2).id for i in range(6)]
        ids += [app.tasks["ev.fail"].delay("card declined").id]
        ids += [app.tasks["ev.retry_once"].delay(7).id]
        ids += [app.tasks["ev.async_add"].delay(20, 22).id]
        app.close()
        finals = {"SUCCESS", "FAILURE"}
        wait_for(
            lambda: all(
                get_json(base + "/api/tasks").get(i, {}).get("state") in finals for i in ids
            ),
            60,
            lambda: (
                "the tasks to reach Flower; worker log:\n"
                + (work / "worker.log").read_text()[-3000:]
            ),
        )
        # A heartbeat after the last task, so the workers page counts them all.
        time.sleep(2.5)
        options.out.mkdir(parents=True, exist_ok=True)
        for page, name in (("tasks", "flower-tasks.png"), ("workers", "flower-workers.png")):
            photograph(chromium, f"{base}/{page}", options.out / name, work / "chromium")
            print(f"flower_screenshot: wrote {options.out / name}")


if __name__ == "__main__":
    main()
