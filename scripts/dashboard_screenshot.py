"""Redraw docs/images/dashboard-*.png: ``rabbitq dashboard`` over a worker with some work
done, some failed and some delayed, photographed by Debian's headless Chromium (Playwright).

A throwaway broker with its management plugin (or ``--broker URL --management-url URL``), a
rabbitq worker on two queues, tasks that succeed, fail into the dead queues and wait in the
delay levels, then the overview and one dead letter are photographed. Run from the repository:

    .venv/bin/python scripts/dashboard_screenshot.py [--out docs/images]
        [--broker URL --management-url URL]
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
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def wait_for(check: Callable[[], bool], seconds: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.3)
    raise SystemExit(f"dashboard_screenshot: gave up waiting for {what()}")


def get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", help="a running broker (default: a throwaway local node)")
    parser.add_argument("--management-url", help="its management API (with --broker)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    options = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("dashboard_screenshot: needs Chromium (apt-get install chromium)")
    if options.broker and not options.management_url:
        raise SystemExit("dashboard_screenshot: --broker needs --management-url too")

    sys.path.insert(0, str(REPO))
    from playwright.sync_api import expect, sync_playwright

    from rabbitq.testing import LocalBroker, free_port

    # A broker of its own shows only this demo; on a shared one, names nobody else uses.
    suffix = "" if options.broker is None else f"-{uuid.uuid4().hex[:6]}"
    emails, reports = f"emails{suffix}", f"reports{suffix}"
    with ExitStack() as stack, tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        broker_url, management_url = options.broker, options.management_url
        if broker_url is None:
            broker = stack.enter_context(LocalBroker(management=True))
            broker_url, management_url = broker.url, broker.management_url
        from integration.apps import core_app

        core_app.app.broker_url = broker_url
        started(
            stack,
            [sys.executable, "-m", "rabbitq", "worker", "-A", "integration.apps.core_app",
             "-Q", f"{emails},{reports}", "-n", "demo@%h", "--concurrency", "4"],
            work / "worker.log",
            {"RABBITQ_BROKER_URL": broker_url, "RABBITQ_TEST_RECORD": str(work / "ran.txt")},
        )  # fmt: skip
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        started(
            stack,
            [sys.executable, "-m", "rabbitq", "dashboard", "--port", str(port),
             "--broker", broker_url, "--management-url", str(management_url)],
            work / "dashboard.log",
            {"RABBITQ_DASHBOARD_TOKEN": ""},
        )  # fmt: skip
        wait_for(
            lambda: get_json(base + "/api/status")["totals"]["workers_online"] >= 1,
            90,
            lambda: "the worker to be online; log:\n" + (work / "worker.log").read_text()[-3000:],
        )
        missing = str(work / "not-there-yet.csv")
        for i in range(12):
            core_app.record.apply_async((f"welcome-{i}",), queue=emails)
        for customer in ("ada", "grace", "linus"):
            core_app.needs_file.apply_async((customer, missing), queue=emails)
        core_app.needs_file.apply_async(("monthly", missing), queue=reports)
        for countdown in (90, 600, 3600, 3600, 86400):
            core_app.record.apply_async(("reminder",), queue=emails, countdown=countdown)
        for _ in range(3):
            core_app.slow_record.apply_async(("report", 120), queue=reports)
        core_app.app.close()
        wait_for(
            lambda: get_json(base + "/api/status")["totals"]["dead_letters"] == 4,
            90,
            lambda: "four dead letters; status: " + json.dumps(get_json(base + "/api/status")),
        )
        options.out.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(base + "/")
            expect(page.locator("#dead-table")).to_contain_text(f"{emails}.dead", timeout=60_000)
            expect(page.locator("#delay-table")).to_be_visible()
            time.sleep(5)  # a few refreshes, so the management API's rates have moved
            overview = options.out / "dashboard-overview.png"
            page.screenshot(path=str(overview), full_page=True)
            print(f"dashboard_screenshot: wrote {overview}")
            page.goto(f"{base}/dead/{emails}.dead")
            page.locator("#letters tbody tr a").first.click()
            expect(page.locator("#letter-traceback")).to_be_visible()
            letter = options.out / "dashboard-dead-letter.png"
            page.screenshot(path=str(letter), full_page=True)
            print(f"dashboard_screenshot: wrote {letter}")
            browser.close()


if __name__ == "__main__":
    main()
