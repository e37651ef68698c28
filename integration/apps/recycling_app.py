"""The limits app, plus a task that runs until the test opens its gate, for the recycling tests.

A gate instead of a sleep: a test holds a task running across a recycle for exactly as long as
it needs, whatever the machine's speed. Lines are "<task id> <label> <token> <pid>", as
``records`` writes them (the token is new in every interpreter image).
"""

from __future__ import annotations

import os
import time

from integration.apps.limits_app import PROCESS_TOKEN, app, leaks, records
from integration.apps.record import append_record

__all__ = ["app", "leaks", "records", "waits_for_gate"]

GATE_GIVES_UP_AFTER = 120.0  # seconds: a test that never opens its gate fails, not hangs


@app.task
def waits_for_gate(gate: str) -> None:
    task_id = waits_for_gate.request.id
    append_record(f"{task_id} started {PROCESS_TOKEN} {os.getpid()}")
    gives_up = time.monotonic() + GATE_GIVES_UP_AFTER
    while not os.path.exists(gate):
        if time.monotonic() > gives_up:
            append_record(f"{task_id} gave-up {PROCESS_TOKEN} {os.getpid()}")
            return
        time.sleep(0.02)
    append_record(f"{task_id} finished {PROCESS_TOKEN} {os.getpid()}")
