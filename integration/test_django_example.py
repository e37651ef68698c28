"""examples/django/: a real Django request commits an order, and its receipt task runs on a
real worker after the commit; a request that rolls back publishes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from integration.support import queue_depth, running_worker, wait_for
from integration.web_support import DJANGO_PROJECT, free_port, serving

# A Django project, not the broker's version: once, in the first pass.
pytestmark = pytest.mark.first_pass_only

pytest.importorskip("django")


@pytest.fixture
def project_env(broker_url: str, tmp_path: Path) -> dict[str, str]:
    """The example project on sys.path, on this test's broker, with a migrated database."""
    env = {
        "PYTHONPATH": str(DJANGO_PROJECT),
        "DJANGO_SETTINGS_MODULE": "shop_site.settings",
        "RABBITQ_BROKER_URL": broker_url,
        "SHOP_DB": str(tmp_path / "shop.sqlite3"),
    }
    subprocess.run(
        [sys.executable, str(DJANGO_PROJECT / "manage.py"), "migrate", "-v", "0"],
        env={**os.environ, **env},
        check=True,
        timeout=60,
    )
    return env


def test_an_order_committed_by_a_django_request_gets_its_receipt_from_a_worker(
    broker_url: str, tmp_path: Path, project_env: dict[str, str]
) -> None:
    port = free_port()
    runserver = [
        sys.executable, str(DJANGO_PROJECT / "manage.py"), "runserver", f"127.0.0.1:{port}",
        "--noreload",
    ]  # fmt: skip
    with (
        serving(runserver, port, tmp_path / "django.log", project_env) as server,
        running_worker(
            broker_url, "orders", tmp_path, env=project_env, app="shop_site.rabbitq_app"
        ) as worker,
    ):
        base = f"http://127.0.0.1:{port}/orders/"
        declined = httpx.post(f"{base}?fail=1", json={"item": "umbrella"}, timeout=10)
        assert declined.status_code == 500, server.log()
        placed = httpx.post(base, json={"item": "teapot"}, timeout=10)
        assert placed.status_code == 201, server.log()
        order_id = placed.json()["id"]

        def receipt_sent() -> bool:
            return bool(httpx.get(f"{base}{order_id}/", timeout=10).json()["receipt_sent"])

        wait_for(receipt_sent, 30, lambda: f"no receipt; worker log:\n{worker.log()[-3000:]}")
        # The declined order's transaction rolled back: its message was never published
        # (it would have been ahead of the teapot's), so one task ran and nothing waits.
        runs = [line for line in worker.log().splitlines() if "send_receipt[" in line]
        assert len(runs) == 1 and "succeeded in" in runs[0], worker.log()
        assert queue_depth(broker_url, "orders") == 0
