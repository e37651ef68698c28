"""Core benchmark: rabbitq against the raw AMQP clients, same broker, same run.

    .venv/bin/python benchmarks/bench_core.py [--broker URL] [--quick] [--events-runs 3]
    .venv/bin/python benchmarks/bench_core.py --only-events   # the cost of task events (-E)

Prints each figure of ours next to the raw client's and the ratio. Not a test: these machines
are shared and noisy, so read the ratios, and run it twice before believing a change.

Raw baselines:
* single publishes: pika BlockingConnection with confirms (one publish, wait for its confirm);
* bulk publishes: aiormq with pipelined confirms (many in flight at once);
* consuming: aiormq with manual acks, one process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiormq
import pika

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import bench_app  # noqa: E402
from rabbitq.message import TaskMessage, encode_task  # noqa: E402
from rabbitq.serializers import MSGPACK  # noqa: E402
from rabbitq.testing import LocalBroker  # noqa: E402

PREFETCH = 256


def report(name: str, ours: float, raw: float, unit: str, higher_is_better: bool = True) -> None:
    ratio = ours / raw if higher_is_better else raw / ours
    print(
        f"{name:<46} ours {ours:>9.1f} {unit:<6} raw {raw:>9.1f} {unit:<6} ratio {ratio:.2f}x",
        flush=True,
    )


def purge(url: str, queue: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    connection.channel().queue_purge(queue)
    connection.close()


def consumers(url: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.consumer_count)
    finally:
        connection.close()


def wait_for_consumer(url: str, queue: str) -> None:
    while consumers(url, queue) == 0:
        time.sleep(0.05)


def depth(url: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        connection.close()


# -- publishing ---------------------------------------------------------------------------------


def raw_pika_single(url: str, queue: str, count: int) -> float:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.confirm_delivery()
    body = encode_task(TaskMessage(task="bench.noop"), MSGPACK)
    properties = pika.BasicProperties(
        delivery_mode=2, headers=body.headers, content_type=body.content_type, message_id="x"
    )
    started = time.perf_counter()
    for _ in range(count):
        channel.basic_publish("rabbitq", queue, body.body, properties, mandatory=True)
    elapsed = time.perf_counter() - started
    connection.close()
    return count / elapsed


def ours_delay(count: int, threads: int) -> float:
    per_thread = count // threads

    def run() -> None:
        for _ in range(per_thread):
            bench_app.noop.delay()

    bench_app.noop.delay()  # connect and declare outside the timing
    workers = [threading.Thread(target=run) for _ in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return per_thread * threads / (time.perf_counter() - started)


async def _raw_aiormq_bulk(url: str, queue: str, count: int) -> float:
    connection = await aiormq.connect(url)
    channel = await connection.channel(publisher_confirms=True)
    body = encode_task(TaskMessage(task="bench.noop"), MSGPACK)
    properties = aiormq.spec.Basic.Properties(
        delivery_mode=2, headers=body.headers, content_type=body.content_type, message_id="x"
    )
    started = time.perf_counter()
    window = 1000
    for offset in range(0, count, window):
        await asyncio.gather(
            *(
                channel.basic_publish(
                    body.body,
                    exchange="rabbitq",
                    routing_key=queue,
                    properties=properties,
                    mandatory=True,
                )
                for _ in range(min(window, count - offset))
            )
        )
    elapsed = time.perf_counter() - started
    await connection.close()
    return count / elapsed


def raw_aiormq_bulk(url: str, queue: str, count: int) -> float:
    return asyncio.run(_raw_aiormq_bulk(url, queue, count))


def start_worker(
    url: str, queue: str, *args: str, **env: str
) -> tuple[subprocess.Popen[bytes], Path]:
    """`rabbitq worker` on the benchmark app, logging to a temporary file."""
    log = Path(tempfile.mkdtemp()) / "worker.log"
    with open(log, "wb") as output:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rabbitq",
                "worker",
                "-A",
                "benchmarks.bench_app",
                "-Q",
                queue,
                *args,
            ],
            cwd=ROOT,
            stdout=output,
            stderr=output,
            env={**os.environ, "RABBITQ_BROKER_URL": url, **env},
        )
    return worker, log


# -- consuming ----------------------------------------------------------------------------------


async def _raw_aiormq_consume(url: str, queue: str, count: int) -> float:
    connection = await aiormq.connect(url)
    channel = await connection.channel()
    await channel.basic_qos(prefetch_count=PREFETCH)
    done = asyncio.Event()
    seen = 0
    started = 0.0

    async def on_message(message: aiormq.abc.DeliveredMessage) -> None:
        nonlocal seen, started
        if seen == 0:
            started = time.perf_counter()
        seen += 1
        await message.channel.basic_ack(message.delivery_tag)
        if seen >= count:
            done.set()

    await channel.basic_consume(queue, on_message, no_ack=False)
    await done.wait()
    elapsed = time.perf_counter() - started
    await connection.close()
    return count / elapsed


def fill(url: str, queue: str, count: int) -> None:
    raw_aiormq_bulk(url, queue, count)


def ours_consume(url: str, queue: str, count: int, processes: int, *extra: str) -> float:
    fill(url, queue, count)
    worker, _log = start_worker(
        url,
        queue,
        "-P",
        str(processes),
        "--prefetch",
        str(PREFETCH),
        "--loglevel",
        "WARNING",
        *extra,
    )
    try:
        # Time from the first message taken to the queue being empty (and all acked).
        while depth(url, queue) >= count:
            time.sleep(0.002)
        started = time.perf_counter()
        while _unfinished(url, queue) > 0:
            time.sleep(0.01)
        return count / (time.perf_counter() - started)
    finally:
        worker.terminate()
        worker.wait(30)


def _unfinished(url: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        ok = connection.channel().queue_declare(queue, passive=True).method
        # message_count excludes unacked; the last batch is acked within prefetch
        return int(ok.message_count)
    finally:
        connection.close()


@contextmanager
def event_monitor(url: str) -> Iterator[list[int]]:
    """A monitor as Flower runs one: a queue of its own bound to celeryev, drained (no acks);
    yields a one-item list counting the event messages it took."""
    taken = [0]
    ready = threading.Event()
    stop = threading.Event()

    def drain() -> None:
        connection = pika.BlockingConnection(pika.URLParameters(url))
        channel = connection.channel()
        channel.exchange_declare("celeryev", "topic", durable=True)
        name = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(name, "celeryev", "#")

        def count(*_args: object) -> None:
            taken[0] += 1

        channel.basic_consume(name, count, auto_ack=True)
        ready.set()
        while not stop.is_set():
            connection.process_data_events(0.2)
        connection.close()

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    ready.wait(30)
    try:
        yield taken
    finally:
        stop.set()
        thread.join(10)


def events_cost(url: str, queue: str, count: int, runs: int) -> None:
    """No-op drain with task events (-E) and without, alternating, a monitor consuming the
    events; medians of ``runs`` each."""
    for processes in (1, 2):
        without: list[float] = []
        with_events: list[float] = []
        with event_monitor(url) as taken:
            for _ in range(runs):
                purge(url, queue)
                without.append(ours_consume(url, queue, count, processes))
                purge(url, queue)
                with_events.append(ours_consume(url, queue, count, processes, "-E"))
        report(
            f"worker no-op -E vs without, {processes} process(es)",
            statistics.median(with_events),
            statistics.median(without),
            "task/s",
        )
        print(f"    event messages the monitor took: {taken[0]:,}", flush=True)


# -- latency ------------------------------------------------------------------------------------


def read_latencies(path: Path, count: int) -> list[float]:
    """The latencies the tasks appended to ``path``, once ``count`` are in (or after 30 s)."""
    deadline = time.time() + 30
    while time.time() < deadline:
        if path.exists() and len(path.read_text().split()) >= count:
            break
        time.sleep(0.05)
    return [float(x) for x in path.read_text().split()]


def ours_latency(
    url: str, queue: str, rate: int, seconds: float, loglevel: str = "INFO"
) -> list[float]:
    latency_file = Path(tempfile.mkdtemp()) / "latency.txt"
    worker, _log = start_worker(
        url, queue, "--loglevel", loglevel, RABBITQ_BENCH_LATENCY_FILE=str(latency_file)
    )
    try:
        wait_for_consumer(url, queue)
        count = int(rate * seconds)
        interval = 1.0 / rate
        next_at = time.perf_counter()
        for _ in range(count):
            bench_app.stamp.apply_async((time.time(),), queue=queue)
            next_at += interval
            time.sleep(max(0.0, next_at - time.perf_counter()))
        return read_latencies(latency_file, count)
    finally:
        worker.terminate()
        worker.wait(30)


async def _raw_latency(url: str, queue: str, rate: int, seconds: float) -> list[float]:
    consumer = await aiormq.connect(url)
    consume_channel = await consumer.channel()
    latencies: list[float] = []

    async def on_message(message: aiormq.abc.DeliveredMessage) -> None:
        latencies.append(time.time() - float(message.body))
        await message.channel.basic_ack(message.delivery_tag)

    await consume_channel.basic_consume(queue, on_message, no_ack=False)
    publisher = await aiormq.connect(url)
    channel = await publisher.channel(publisher_confirms=True)
    count = int(rate * seconds)
    interval = 1.0 / rate
    next_at = time.perf_counter()
    for _ in range(count):
        await channel.basic_publish(
            str(time.time()).encode(),
            exchange="rabbitq",
            routing_key=queue,
            mandatory=True,
            properties=aiormq.spec.Basic.Properties(delivery_mode=2),
        )
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    while len(latencies) < count:
        await asyncio.sleep(0.05)
    await publisher.close()
    await consumer.close()
    return latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def report_latencies(name: str, ours: list[float], raw: list[float]) -> None:
    """p50 and p99 of two sets of latencies (seconds), in ms; ``name`` has a ``{}`` for which."""
    for which, fraction in (("p50", 0.5), ("p99", 0.99)):
        report(
            name.format(which),
            percentile(ours, fraction) * 1e3,
            percentile(raw, fraction) * 1e3,
            "ms",
            higher_is_better=False,
        )


# -- main ---------------------------------------------------------------------------------------


def argument_parser(doc: str | None) -> argparse.ArgumentParser:
    """A benchmark's command line: its docstring's first line, and ``--broker`` (default: a
    throwaway local node, or $RABBITQ_BENCH_URL)."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n")[0])
    parser.add_argument("--broker", default=os.environ.get("RABBITQ_BENCH_URL"))
    return parser


@contextmanager
def broker(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    with LocalBroker() as local:
        yield local.url


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller counts")
    parser.add_argument(
        "--events-runs", type=int, default=3, help="runs with and without -E (medians)"
    )
    parser.add_argument(
        "--only-events", action="store_true", help="only the cost of task events (-E)"
    )
    options = parser.parse_args()
    scale = 0.2 if options.quick else 1.0
    with broker(options.broker) as url:
        os.environ["RABBITQ_BROKER_URL"] = url
        bench_app.app.broker_url = url
        queue = "bench"
        bench_app.noop.apply_async(queue=queue)  # declares the queue and the exchange
        purge(url, queue)
        print(f"broker {url.split('@')[-1]}, {os.cpu_count()} cores\n", flush=True)
        if options.only_events:
            events_cost(url, queue, int(40000 * scale), options.events_runs)
            bench_app.app.close()
            return

        n = int(3000 * scale)
        raw = raw_pika_single(url, queue, n)
        ours = ours_delay(n, threads=1)
        report("delay() from 1 thread vs pika+confirms", ours, raw, "msg/s")
        purge(url, queue)
        ours8 = ours_delay(int(16000 * scale), threads=8)
        report("delay() from 8 threads vs pika+confirms", ours8, raw, "msg/s")
        purge(url, queue)
        bulk = raw_aiormq_bulk(url, queue, int(20000 * scale))
        report("delay() from 8 threads vs aiormq pipelined", ours8, bulk, "msg/s")
        purge(url, queue)

        n = int(40000 * scale)
        fill(url, queue, n)
        raw_consume = asyncio.run(_raw_aiormq_consume(url, queue, n))
        for processes in (1, 2):
            purge(url, queue)
            ours_rate = ours_consume(url, queue, n, processes)
            report(
                f"worker no-op, {processes} process(es) vs aiormq 1 proc",
                ours_rate,
                raw_consume,
                "task/s",
            )
        purge(url, queue)
        events_cost(url, queue, n, options.events_runs)
        purge(url, queue)

        seconds = 10 * scale
        ours_lat = ours_latency(url, queue, 100, seconds)
        purge(url, queue)
        raw_lat = asyncio.run(_raw_latency(url, queue, 100, seconds))
        report_latencies("send-to-start latency {} at 100/s", ours_lat, raw_lat)
        bench_app.app.close()


if __name__ == "__main__":
    main()
