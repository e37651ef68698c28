"""examples/fastapi/: a request to a real uvicorn server publishes with ``adelay`` and a real
worker runs the task; the lifespan connects the publisher at startup and closes it at exit."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from integration.support import running_worker, wait_for
from integration.web_support import free_port, serving

# A FastAPI app, not the broker's version: once, in the first pass.
pytestmark = pytest.mark.first_pass_only

pytest.importorskip("fastapi")


def test_a_signup_enqueued_with_adelay_from_uvicorn_runs_on_a_worker(
    broker_url: str, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox.txt"
    env = {"RABBITQ_BROKER_URL": broker_url, "SHOP_OUTBOX": str(outbox)}
    port = free_port()
    uvicorn = [
        sys.executable, "-m", "uvicorn", "examples.fastapi.shop_api:api",
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    with (
        running_worker(
            broker_url, "signups", tmp_path, env=env, app="examples.fastapi.tasks"
        ) as worker,
        serving(uvicorn, port, tmp_path / "uvicorn.log", env) as server,
    ):
        replies = [
            httpx.post(f"http://127.0.0.1:{port}/signups", json={"email": f"{n}@example.com"})
            for n in range(3)
        ]
        assert [reply.status_code for reply in replies] == [202] * 3, server.log()
        wait_for(
            lambda: outbox.exists() and len(outbox.read_text().splitlines()) == 3,
            30,
            lambda: f"not all sent; worker log:\n{worker.log()[-3000:]}",
        )
        assert sorted(outbox.read_text().splitlines()) == [
            f"welcome {n}@example.com" for n in range(3)
        ]
        # uvicorn shuts down gracefully on SIGTERM, then re-raises it: -15 is a clean exit.
        assert server.stop() in (0, -15)
    log = server.log()
    assert "Application startup complete" in log and "Application shutdown complete" in log, log
    assert "Traceback" not in log, log
