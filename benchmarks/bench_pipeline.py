"""The middleware seam's cost per delivery: the worker's pipeline, in memory, no broker.

    .venv/bin/python benchmarks/bench_pipeline.py [--deliveries N] [--runs R] [--multiprocess]

Runs no-op deliveries (an ``async def`` task, so no thread hand-off blurs the figure) through
``worker/pipeline.py`` with an in-memory publisher and acker, three ways, interleaved, and
prints the median of R runs for each: no middleware at all; the default stack without time
limits (Celery's signals and the worker's counters); the default stack (the revocations
first, and the time limits, which give every run a RunControl, a timer for the
consumer-timeout ceiling and the interruptible wrapper around the coroutine: what every
worker runs); the same with a soft and a hard limit on the task (two timers); the
default stack plus five user
middleware that override every worker hook with a plain no-op; the default stack plus the
Prometheus metrics (``rabbitq worker --metrics-port``; ``--multiprocess`` writes them to
prometheus-client's multiprocess files, as under ``--processes N``). The first against the
default is what the seam costs a worker that uses nothing; divide a difference by a real
worker's time per no-op task (``bench_core.py``) for its share.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import rabbitq  # noqa: E402
from rabbitq.message import SENT_AT_HEADER, sent_at_ms  # noqa: E402
from rabbitq.middleware import MiddlewareStack, WorkerStats  # noqa: E402
from rabbitq.middleware.revocations import Revocations  # noqa: E402
from rabbitq.worker.time_limits import TimeLimits  # noqa: E402
from tests.pipeline_support import harness, make_app, task_envelope  # noqa: E402


class NoOp(rabbitq.Middleware):
    def message_received(self, delivery: Any) -> None: ...
    def before_process(self, context: rabbitq.TaskContext) -> None: ...
    def after_process(self, context: rabbitq.TaskContext, outcome: rabbitq.Outcome) -> None: ...


def build(kind: str) -> Any:
    app = make_app()

    @app.task(name="noop")
    async def noop() -> None:
        return None

    @app.task(name="limited", soft_time_limit=100, time_limit=200)
    async def limited() -> None:
        return None

    limits = TimeLimits(app.consumer_timeout)
    stacks = {
        "none": MiddlewareStack(()),
        "no limits": app.middleware.added(WorkerStats()),
        # As a worker runs it: revocations first, then the app's, the limits and the counters.
        "default": MiddlewareStack((Revocations(), *app.middleware, limits, WorkerStats())),
        "limited": app.middleware.added(limits, WorkerStats()),
        "five more": app.middleware.added(limits, WorkerStats(), *(NoOp() for _ in range(5))),
    }
    if kind == "metrics":
        # Imported here: --multiprocess must set its directory before prometheus-client loads.
        import prometheus_client

        from rabbitq.metrics.worker_metrics import WorkerMetrics, WorkerMetricSet

        metrics = WorkerMetrics(WorkerMetricSet(prometheus_client.CollectorRegistry()))
        stacks["metrics"] = MiddlewareStack(
            (Revocations(), *app.middleware, metrics, limits, WorkerStats())
        )
    h = harness(app, middleware=stacks[kind])
    return h


async def rate(kind: str, deliveries: int) -> float:
    h = build(kind)
    # Sent-at as every rabbitq publish carries it (the metrics' queue wait reads it).
    envelope = task_envelope(
        "limited" if kind == "limited" else "noop",
        headers={SENT_AT_HEADER: sent_at_ms(time.time())},
    )
    started = time.perf_counter()
    for _ in range(deliveries):
        await h.deliver(envelope)
    elapsed = time.perf_counter() - started
    assert len(h.acks.acked) == deliveries
    return deliveries / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--deliveries", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument(
        "--multiprocess",
        action="store_true",
        help="the metrics in prometheus-client's multiprocess files (as --processes N writes)",
    )
    options = parser.parse_args()
    if options.multiprocess:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="bench-metrics-")
    kinds = ("none", "no limits", "default", "limited", "five more", "metrics")
    rates: dict[str, list[float]] = {kind: [] for kind in kinds}
    for kind in kinds:  # warm-up, not counted: imports, caches, the first thread pool
        asyncio.run(rate(kind, options.deliveries // 10))
    for _ in range(options.runs):
        for kind in kinds:
            rates[kind].append(asyncio.run(rate(kind, options.deliveries)))
    base = statistics.median(rates["none"])
    for kind in kinds:
        median = statistics.median(rates[kind])
        print(
            f"pipeline, {kind:<10} middleware  {median:>9.0f} deliveries/s  "
            f"{1e6 / median:6.2f} µs each  ({1e6 / median - 1e6 / base:+.2f} µs vs none)"
        )


if __name__ == "__main__":
    main()
