"""Tasks held back by global limits, for integration/test_global_limits.py and
benchmarks/bench_limits.py.

Each run records "<label> start|end <epoch seconds> <pid>" in $RABBITQ_TEST_RECORD, so a test
can rebuild what ran at once. The limits' names end in $RABBITQ_TEST_LIMIT (one set of broker
structures per test); the queue is $RABBITQ_TEST_QUEUE.
"""

from __future__ import annotations

import os
import time

import rabbitq
from integration.apps.record import append_record

SUFFIX = os.environ.get("RABBITQ_TEST_LIMIT", "t")
QUEUE = os.environ.get("RABBITQ_TEST_QUEUE", "throttled")
RATE = os.environ.get("RABBITQ_TEST_RATE", "20/s")
BURST = int(os.environ.get("RABBITQ_TEST_BURST", "1"))
CONCURRENCY = int(os.environ.get("RABBITQ_TEST_CONCURRENCY", "3"))

app = rabbitq.App("throttled", default_queue=QUEUE)


def _record(label: str, event: str) -> None:
    append_record(f"{label} {event} {time.time():.6f} {os.getpid()}")


def _ran(label: str, seconds: float) -> None:
    _record(label, "start")
    time.sleep(seconds)
    _record(label, "end")


@app.task(limits=rabbitq.Concurrency(f"held-{SUFFIX}", CONCURRENCY))
def held(label: str, seconds: float = 0.05) -> None:
    _ran(label, seconds)


@app.task(limits=rabbitq.Mutex(f"user-{SUFFIX}", key="user"))
def per_user(user: str, label: str, seconds: float = 0.01) -> None:
    _ran(f"{user}/{label}", seconds)


@app.task(limits=rabbitq.Rate(f"rated-{SUFFIX}", RATE, burst=BURST))
def rated(label: str) -> None:
    _record(label, "start")


@app.task(rate_limit=RATE)
def locally_rated(label: str) -> None:
    _record(label, "start")


@app.task
def unlimited(label: str) -> None:
    _record(label, "start")
