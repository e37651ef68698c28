"""Results and canvas benchmark: group publishing, a 10,000-member chord, get() round trips.

    .venv/bin/python benchmarks/bench_canvas.py [--broker URL] [--quick]

Starts its own RabbitMQ, Redis and PostgreSQL unless --broker is given (then Redis must be
at $RABBITQ_BENCH_REDIS). Prints ratios against raw aiormq with pipelined confirms, same broker,
same run; read them, not the absolute numbers (shared, noisy machines).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
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
    raw_aiormq_bulk,
    report,
    start_worker,
    wait_for_consumer,
)
from rabbitq import chord, group  # noqa: E402
from rabbitq.testing import LocalPostgres, LocalRedis  # noqa: E402


def group_publish(count: int) -> float:
    workflow = group(bench_app.noop.s().set(queue="bench") for _ in range(count))
    started = time.perf_counter()
    workflow.apply_async()
    return count / (time.perf_counter() - started)


async def _agroup_publish(count: int) -> float:
    workflow = group(bench_app.noop.s().set(queue="bench") for _ in range(count))
    await group(bench_app.noop.s().set(queue="bench")).aapply_async()  # connect first
    started = time.perf_counter()
    await workflow.aapply_async()
    elapsed = time.perf_counter() - started
    await bench_app.app.aclose()
    return count / elapsed


def chord_end_to_end(url: str, queue: str, members: int, processes: int) -> float:
    record = Path(tempfile.mkdtemp()) / "done.txt"
    worker, log = start_worker(
        url,
        queue,
        "--processes",
        str(processes),
        "--loglevel",
        "WARNING",
        RABBITQ_BENCH_LATENCY_FILE=str(record),
    )
    try:
        wait_for_consumer(url, queue)
        time.sleep(1.0)
        started = time.time()
        header = [bench_app.noop.s().set(queue=queue) for _ in range(members)]
        chord(header, bench_app.chord_done.s().set(queue=queue)).apply_async()
        while not record.exists() or not record.read_text().strip():
            if worker.poll() is not None:
                raise SystemExit(f"worker died:\n{log.read_text()[-2000:]}")
            time.sleep(0.05)
        return float(record.read_text().split()[0]) - started
    finally:
        worker.terminate()
        worker.wait(30)


def round_trips(url: str, queue: str, backend: str, count: int) -> list[float]:
    worker, _log = start_worker(url, queue, "--loglevel", "WARNING", RABBITQ_RESULT_BACKEND=backend)
    app = bench_app.app
    app.result_backend_url, app._backend = backend, None
    try:
        wait_for_consumer(url, queue)
        for _ in range(20):  # warm up both ends
            bench_app.echo.apply_async((1,), queue=queue).get(timeout=30)
        samples = []
        for value in range(count):
            started = time.perf_counter()
            assert bench_app.echo.apply_async((value,), queue=queue).get(timeout=30) == value
            samples.append((time.perf_counter() - started) * 1000)
        return samples
    finally:
        app.result_backend_url, app._backend = None, None
        worker.terminate()
        worker.wait(30)


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller counts")
    options = parser.parse_args()
    scale = 0.2 if options.quick else 1.0
    with broker(options.broker) as url, LocalRedis() as redis, LocalPostgres() as postgres:
        os.environ["RABBITQ_BROKER_URL"] = url
        bench_app.app.broker_url = url
        queue = "bench"
        bench_app.noop.apply_async(queue=queue)
        purge(url, queue)
        print(f"broker {url.split('@')[-1]}, {os.cpu_count()} cores\n", flush=True)

        n = int(10000 * scale)
        group_publish(100)  # connect and declare outside the timing
        purge(url, queue)
        for attempt in range(2):
            ours = group_publish(n)
            purge(url, queue)
            raw = raw_aiormq_bulk(url, queue, n)
            purge(url, queue)
            report(
                f"group of {n} apply_async() vs aiormq pipelined #{attempt + 1}", ours, raw, "msg/s"
            )
            ours_async = asyncio.run(_agroup_publish(n))
            purge(url, queue)
            report(
                f"group of {n} aapply_async() vs aiormq pipelined #{attempt + 1}",
                ours_async,
                raw,
                "msg/s",
            )

        members = int(10000 * scale)
        for processes in (1, 2):
            seconds = chord_end_to_end(url, queue, members, processes)
            print(
                f"chord of {members} no-op members, end to end, {processes} worker "
                f"process(es): {seconds:.2f} s ({members / seconds:.0f} members/s)",
                flush=True,
            )
            purge(url, queue)

        count = int(500 * scale)
        backends = (("rpc", "rpc://"), ("redis", redis.url), ("postgres", postgres.url))
        for name, backend in backends:
            samples = round_trips(url, queue, backend, count)
            print(
                f"delay().get() round trip over {name:<8} ({count} sequential): "
                f"p50 {percentile(samples, 0.5):.2f} ms  p99 {percentile(samples, 0.99):.2f} ms",
                flush=True,
            )
        bench_app.app.close()


if __name__ == "__main__":
    main()
