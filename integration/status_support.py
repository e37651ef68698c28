"""``rabbitq status --json`` as a test reads it: run as a user would, until it shows what a
test waits for (the management API's figures lag by a few seconds)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from integration.support import wait_for


def status(broker_url: str, management_url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rabbitq", "status", "--broker", broker_url,
         "--management-url", management_url, *extra],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def status_json(broker_url: str, management_url: str, *extra: str) -> dict[str, Any]:
    done = status(broker_url, management_url, "--json", *extra)
    assert done.returncode == 0, done.stderr
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def settled(
    broker_url: str, management_url: str, check: Any, *extra: str, timeout: float = 40.0
) -> dict[str, Any]:
    """The first status snapshot for which ``check(snapshot)`` holds."""
    seen: list[dict[str, Any]] = []

    def holds() -> bool:
        seen.append(status_json(broker_url, management_url, *extra))
        return bool(check(seen[-1]))

    wait_for(holds, timeout, lambda: json.dumps(seen[-1] if seen else None, indent=1)[-4000:])
    return seen[-1]
