"""Tasks for the time-limit, consumer-timeout and recycling tests.

Each run records "<task id> <label>" in $RABBITQ_TEST_RECORD, with the recording process's
token (one per interpreter image: a process that re-executes itself gets a new one) so a test
can tell which process ran what. With $RABBITQ_TEST_RECORD_LIFECYCLE set, each worker process
image also records "- ready|stopped <token> <pid> <epoch seconds>" when it starts and stops
consuming, so a test can order a task's runs and dead letters against a recycle.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import Any

import rabbitq
from integration.apps.record import append_record
from rabbitq import signals
from rabbitq.errors import SoftTimeLimitExceeded, TimeLimitExceeded

PROCESS_TOKEN = uuid.uuid4().hex[:8]
_LEAK: list[bytes] = []

consumer_timeout = os.environ.get("RABBITQ_TEST_CONSUMER_TIMEOUT", "1800")
app = rabbitq.App(
    "limits",
    consumer_timeout=None if consumer_timeout == "none" else float(consumer_timeout),
)


def _record_lifecycle(event: str) -> None:
    if os.environ.get("RABBITQ_TEST_RECORD_LIFECYCLE"):
        append_record(f"- {event} {PROCESS_TOKEN} {os.getpid()} {time.time():.6f}")


@signals.worker_ready.connect
def _ready(**_: Any) -> None:
    _record_lifecycle("ready")


@signals.worker_shutdown.connect
def _stopped(**_: Any) -> None:
    _record_lifecycle("stopped")


def _spin(seconds: float) -> None:
    """Busy in Python bytecode, where an asynchronous exception is delivered."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


@app.task(soft_time_limit=1.0)
def spins_past_soft_limit(seconds: float) -> str:
    try:
        _spin(seconds)
    except SoftTimeLimitExceeded:
        append_record(f"{spins_past_soft_limit.request.id} cleaned-up {PROCESS_TOKEN}")
        return "cleaned up"
    return "finished"


@app.task(soft_time_limit=1.0)
async def awaits_past_soft_limit(seconds: float) -> str:
    try:
        await asyncio.sleep(seconds)
    except SoftTimeLimitExceeded:
        append_record(f"{awaits_past_soft_limit.request.id} cleaned-up {PROCESS_TOKEN}")
        return "cleaned up"
    return "finished"


@app.task(time_limit=1.0)
def spins_past_hard_limit(seconds: float) -> None:
    append_record(f"{spins_past_hard_limit.request.id} started {PROCESS_TOKEN}")
    _spin(seconds)
    append_record(f"{spins_past_hard_limit.request.id} finished {PROCESS_TOKEN}")


@app.task(time_limit=1.0)
async def awaits_past_hard_limit(seconds: float) -> None:
    append_record(f"{awaits_past_hard_limit.request.id} started {PROCESS_TOKEN}")
    await asyncio.sleep(seconds)
    append_record(f"{awaits_past_hard_limit.request.id} finished {PROCESS_TOKEN}")


@app.task(time_limit=1.0, autoretry_for=(TimeLimitExceeded,), max_retries=1, default_retry_delay=0)
def retried_after_hard_limit(seconds: float) -> None:
    append_record(f"{retried_after_hard_limit.request.id} started {PROCESS_TOKEN}")
    _spin(seconds)


@app.task(time_limit=1.0)
def blocks_in_c(seconds: float) -> None:
    """time.sleep holds no bytecode to interrupt: the thread is stuck until it returns."""
    append_record(f"{blocks_in_c.request.id} started {PROCESS_TOKEN}")
    time.sleep(seconds)
    append_record(f"{blocks_in_c.request.id} woke {PROCESS_TOKEN}")


@app.task(time_limit=1.0, autoretry_for=(TimeLimitExceeded,), max_retries=1, default_retry_delay=0)
def blocks_then_retried(seconds: float) -> None:
    append_record(f"{blocks_then_retried.request.id} started {PROCESS_TOKEN}")
    time.sleep(seconds)
    append_record(f"{blocks_then_retried.request.id} woke {PROCESS_TOKEN}")


@app.task
def sleeps(seconds: float) -> None:
    append_record(f"{sleeps.request.id} started {PROCESS_TOKEN}")
    time.sleep(seconds)
    append_record(f"{sleeps.request.id} finished {PROCESS_TOKEN}")


@app.task
async def async_sleeps(seconds: float) -> None:
    append_record(f"{async_sleeps.request.id} started {PROCESS_TOKEN}")
    await asyncio.sleep(seconds)
    append_record(f"{async_sleeps.request.id} finished {PROCESS_TOKEN}")


@app.task
def records(label: str) -> None:
    append_record(f"{records.request.id} {label} {PROCESS_TOKEN} {os.getpid()}")


@app.task
def leaks(mebibytes: int) -> None:
    _LEAK.append(os.urandom(mebibytes * 1024 * 1024))
    append_record(f"{leaks.request.id} leaked {PROCESS_TOKEN} {os.getpid()}")


@app.task
def spins(seconds: float) -> None:
    """No limits of its own: only the consumer-timeout ceiling can stop it."""
    append_record(f"{spins.request.id} started {PROCESS_TOKEN}")
    _spin(seconds)
    append_record(f"{spins.request.id} finished {PROCESS_TOKEN}")


def _ran_before(task_id: str) -> bool:
    record = Path(os.environ["RABBITQ_TEST_RECORD"])
    return record.exists() and f"{task_id} started" in record.read_text()


@app.task
async def sleeps_the_first_time(seconds: float) -> None:
    """Awaits ``seconds`` on its first run and records how that run ended; a later run of
    the same message returns at once, recording ``again``."""
    task_id = sleeps_the_first_time.request.id
    if _ran_before(task_id):
        append_record(f"{task_id} again {PROCESS_TOKEN}")
        return
    append_record(f"{task_id} started {PROCESS_TOKEN}")
    try:
        await asyncio.sleep(seconds)
    except BaseException:
        append_record(f"{task_id} stopped {PROCESS_TOKEN}")
        raise
    append_record(f"{task_id} finished {PROCESS_TOKEN}")


@app.task
def spins_the_first_time(seconds: float) -> None:
    """``sleeps_the_first_time`` in a thread, busy in bytecode where it can be stopped."""
    task_id = spins_the_first_time.request.id
    if _ran_before(task_id):
        append_record(f"{task_id} again {PROCESS_TOKEN}")
        return
    append_record(f"{task_id} started {PROCESS_TOKEN}")
    try:
        _spin(seconds)
    except BaseException:
        append_record(f"{task_id} stopped {PROCESS_TOKEN}")
        raise
    append_record(f"{task_id} finished {PROCESS_TOKEN}")
