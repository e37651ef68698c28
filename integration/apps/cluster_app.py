"""Tasks for the node-loss drill (``integration/cluster_support.py``).

Each run appends one line to $RABBITQ_TEST_RECORD: "<kind> <task id> <started> <label...>",
``started`` in epoch seconds, so the drill can tell what ran, how often, when, and whether a
countdown started before its ETA. The routing file ($RABBITQ_ROUTING) makes every queue a
quorum queue.
"""

from __future__ import annotations

import time

import rabbitq
from integration.apps.record import append_record

app = rabbitq.App("cluster", default_queue="cluster")


def _record(kind: str, task: rabbitq.Task, *label: object) -> None:
    request = task.request
    task_id = request.id if request else "-"
    append_record(" ".join([kind, task_id, f"{time.time():.6f}", *map(str, label)]))


@app.task(name="cl.record")
def record(label: object) -> None:
    _record("ran", record, label)


@app.task(name="cl.on_time")
def on_time(label: object) -> None:
    request = on_time.request
    eta = request.eta.timestamp() if request and request.eta else 0.0
    _record("due", on_time, label, f"{eta:.6f}")


@app.task(name="cl.part")
def part(value: int) -> int:
    return value


@app.task(name="cl.body")
def body(values: list[int], label: str) -> None:
    _record("chord", body, label, len(values), sum(values))
