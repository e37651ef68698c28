"""Delays benchmark: countdown publish rate, and lateness of 10,000 random countdowns.

    .venv/bin/python benchmarks/bench_delays.py [--broker URL] [--count 10000]

1. ``apply_async(countdown=...)`` against plain ``delay()`` from 8 threads (same run);
2. 10,000 countdowns drawn uniformly from 1-30 s, published as fast as possible to an idle
   worker: lateness = task start - ETA (p50, p99, max) and how many started early (target:
   p99 <= 50 ms, none early).
"""

from __future__ import annotations

import random
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import bench_app  # noqa: E402
from benchmarks.bench_core import (  # noqa: E402
    argument_parser,
    broker,
    percentile,
    purge,
    start_worker,
    wait_for_consumer,
)
from rabbitq.routing import load_routing  # noqa: E402


def rate(count: int, publish: object, threads: int = 8) -> float:
    shares = [count // threads + (1 if n < count % threads else 0) for n in range(threads)]

    def run(share: int) -> None:
        for _ in range(share):
            publish()  # type: ignore[operator]

    workers = [threading.Thread(target=run, args=(share,)) for share in shares]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument(
        "--levels",
        choices=("quorum", "classic"),
        default="quorum",
        help="queue type of the delay levels (routing file: delay_queue_type)",
    )
    options = parser.parse_args()
    routing = Path(tempfile.mkdtemp()) / "routing.yaml"
    routing.write_text(f"delay_queue_type: {options.levels}\n")
    bench_app.app.topology = load_routing(routing)
    with broker(options.broker) as url:
        bench_app.app.broker_url = url
        queue = "bench_delays"
        bench_app.noop.apply_async(queue=queue, countdown=0.001)  # declares queue and levels
        time.sleep(0.1)
        purge(url, queue)

        plain = rate(8000, lambda: bench_app.noop.apply_async(queue=queue))
        purge(url, queue)
        delayed = rate(8000, lambda: bench_app.noop.apply_async(queue=queue, countdown=3600))
        print(f"delay levels: {options.levels} queues", flush=True)
        print(
            f"{'apply_async(countdown=3600) vs delay(), 8 threads':<52} "
            f"{delayed:8.0f} vs {plain:8.0f} msg/s  ratio {delayed / plain:.2f}x",
            flush=True,
        )
        purge(url, queue)

        latency_file = Path(tempfile.mkdtemp()) / "lateness.txt"
        worker, _log = start_worker(
            url,
            queue,
            "--routing",
            str(routing),
            "--loglevel",
            "WARNING",
            "--concurrency",
            "16",
            RABBITQ_BENCH_LATENCY_FILE=str(latency_file),
        )
        try:
            wait_for_consumer(url, queue)
            rng = random.Random(7)
            countdowns = [rng.uniform(1.0, 30.0) for _ in range(options.count)]
            iterator = iter(countdowns)
            lock = threading.Lock()

            def publish_next() -> None:
                with lock:
                    countdown = next(iterator)
                bench_app.late.apply_async(queue=queue, countdown=countdown)

            started = time.perf_counter()
            rate(options.count, publish_next)
            print(
                f"published {options.count} countdowns of 1-30 s in "
                f"{time.perf_counter() - started:.1f}s; waiting for them...",
                flush=True,
            )
            deadline = time.time() + 60
            while time.time() < deadline:
                if latency_file.exists() and len(latency_file.read_text().split()) >= options.count:
                    break
                time.sleep(0.5)
            lateness = [float(x) * 1000 for x in latency_file.read_text().split()]
        finally:
            worker.terminate()
            worker.wait(30)
        early = sum(1 for x in lateness if x < 0)
        print(
            f"lateness of {len(lateness)} countdowns (start - ETA): "
            f"p50 {percentile(lateness, 0.5):.1f} ms, p99 {percentile(lateness, 0.99):.1f} ms, "
            f"max {max(lateness):.1f} ms; {early} early"
        )
        bench_app.app.close()


if __name__ == "__main__":
    main()
