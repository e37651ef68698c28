"""Tasks for the status specs (``integration/test_status.py``), queue from $STATUS_QUEUE."""

from __future__ import annotations

import os

import rabbitq
from integration.apps.record import append_record

app = rabbitq.App("status")
QUEUE = os.environ.get("STATUS_QUEUE", "status")
STUCK = QUEUE + "-stuck"  # no worker consumes it: what goes there waits


@app.task(name="st.ok", queue=QUEUE)
def ok(label: str) -> str:
    append_record(label)
    return label


@app.task(name="st.boom", queue=QUEUE)
def boom(label: str) -> None:
    append_record(label)
    raise ValueError(f"boom {label}")


@app.task(name="st.stuck", queue=STUCK)
def stuck(label: str) -> str:
    return label


@app.task(name="st.collect", queue=QUEUE)
def collect(results: list[str]) -> int:
    append_record(f"collected {len(results)}")
    return len(results)
