"""rabbitq against Dramatiq and the raw AMQP client: same broker, same workload, same run.

    .venv/bin/python benchmarks/bench_peers.py [--broker URL] [--tasks 100000] [--quick]

Builds Dramatiq in a venv of its own (`.bench-peers-venv`, once, from the package registry) so
that neither project's packages touch the other's, then measures, each side on the same queue
shape (durable, persistent messages, confirms on):

* drain of no-op sync tasks, 2 worker processes: `rabbitq worker -P 2` vs `dramatiq -p 2`;
* drain of no-op `async def` tasks, 2 processes, vs 2 raw aiormq consumers with manual acks;
* one thread's confirmed publish: `delay()` vs Dramatiq's `send()` (confirm_delivery=True);
* send-to-start latency at 100 tasks/s to an idle worker, p50 and p99.

Prints ratios. Not a test: the machine is shared and noisy; run it twice.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiormq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import bench_app  # noqa: E402
from benchmarks.bench_core import (  # noqa: E402
    PREFETCH,
    _raw_aiormq_consume,
    argument_parser,
    broker,
    depth,
    ours_delay,
    ours_latency,
    purge,
    read_latencies,
    report,
    report_latencies,
    start_worker,
    wait_for_consumer,
)
from rabbitq.message import TaskMessage, encode_task  # noqa: E402
from rabbitq.serializers import MSGPACK  # noqa: E402

PEER_VENV = ROOT / ".bench-peers-venv"
PEER_QUEUE = "peer"


def peer_python() -> Path:
    python = PEER_VENV / "bin" / "python"
    if not python.exists():
        print("building the Dramatiq venv (once)...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "dramatiq[rabbitmq]"], check=True
        )
    return python


def peer_env(url: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "RABBITQ_BENCH_URL": url, "PYTHONPATH": str(ROOT), **extra}


# -- filling a queue at the broker's pace (pipelined confirms), outside every timing ------------


async def _fill(
    url: str, exchange: str, queue: str, bodies: list[tuple[bytes, dict[str, object]]]
) -> None:
    connection = await aiormq.connect(url)
    channel = await connection.channel(publisher_confirms=True)
    window = 1000
    for offset in range(0, len(bodies), window):
        await asyncio.gather(
            *(
                channel.basic_publish(
                    body,
                    exchange=exchange,
                    routing_key=queue,
                    properties=aiormq.spec.Basic.Properties(delivery_mode=2, **properties),
                )
                for body, properties in bodies[offset : offset + window]
            )
        )
    await connection.close()


def fill_ours(url: str, queue: str, task: str, count: int) -> None:
    message = encode_task(TaskMessage(task=task), MSGPACK)
    properties: dict[str, object] = {
        "headers": message.headers,
        "content_type": message.content_type,
        "message_id": "x",
    }
    asyncio.run(_fill(url, "rabbitq", queue, [(message.body, properties)] * count))


def fill_peer(url: str, count: int) -> None:
    # Dramatiq's own message shape: JSON, sent to the default exchange.
    def body() -> bytes:
        return json.dumps(
            {
                "queue_name": PEER_QUEUE,
                "actor_name": "noop",
                "args": [],
                "kwargs": {},
                "options": {},
                "message_id": str(uuid.uuid4()),
                "message_timestamp": int(time.time() * 1000),
            },
            separators=(",", ":"),
        ).encode()

    properties: dict[str, object] = {"priority": 0}
    asyncio.run(_fill(url, "", PEER_QUEUE, [(body(), properties) for _ in range(count)]))


def timed_drain(url: str, queue: str, count: int) -> float:
    """Tasks a second from the first message taken to the queue being empty."""
    while depth(url, queue) >= count:
        time.sleep(0.002)
    started = time.perf_counter()
    while depth(url, queue) > 0:
        time.sleep(0.01)
    return count / (time.perf_counter() - started)


def stop(worker: subprocess.Popen[bytes]) -> None:
    worker.terminate()
    try:
        worker.wait(30)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


# -- the three sides ----------------------------------------------------------------------------


def ours_drain(url: str, queue: str, task: str, count: int) -> float:
    fill_ours(url, queue, task, count)
    worker, _log = start_worker(
        url, queue, "-P", "2", "--prefetch", str(PREFETCH), "--loglevel", "WARNING"
    )
    try:
        return timed_drain(url, queue, count)
    finally:
        stop(worker)


def start_peer_worker(url: str, **extra: str) -> subprocess.Popen[bytes]:
    binary = PEER_VENV / "bin" / "dramatiq"
    return subprocess.Popen(
        [str(binary), "benchmarks.dramatiq_app", "-p", "2", "-t", "8", "-Q", PEER_QUEUE],
        cwd=ROOT,
        env=peer_env(url, **extra),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def peer_drain(url: str, count: int) -> float:
    fill_peer(url, count)
    worker = start_peer_worker(url)
    try:
        return timed_drain(url, PEER_QUEUE, count)
    finally:
        stop(worker)


def _raw_consumer(url: str, queue: str, count: int, results: multiprocessing.Queue[float]) -> None:
    results.put(asyncio.run(_raw_aiormq_consume(url, queue, count)))


def raw_drain(url: str, queue: str, count: int, processes: int = 2) -> float:
    fill_ours(url, queue, "bench.anoop", count)
    results: multiprocessing.Queue[float] = multiprocessing.Queue()
    consumers = [
        multiprocessing.Process(
            target=_raw_consumer, args=(url, queue, count // processes, results)
        )
        for _ in range(processes)
    ]
    for consumer in consumers:
        consumer.start()
    # Each reports its own rate over its share; the drain ends with the slowest.
    elapsed = max(count // processes / results.get(timeout=600) for _ in consumers)
    for consumer in consumers:
        consumer.join()
    return (count // processes) * processes / elapsed


def peer_send(url: str, count: int) -> float:
    output = subprocess.run(
        [str(peer_python()), "-m", "benchmarks.dramatiq_app", "send", str(count)],
        cwd=ROOT,
        env=peer_env(url),
        check=True,
        capture_output=True,
        text=True,
    )
    return float(output.stdout.split()[-1])


def peer_latency(url: str, rate: int, seconds: float) -> list[float]:
    latency_file = Path(tempfile.mkdtemp()) / "latency.txt"
    extra = {"RABBITQ_BENCH_LATENCY_FILE": str(latency_file)}
    worker = start_peer_worker(url, **extra)
    try:
        wait_for_consumer(url, PEER_QUEUE)
        subprocess.run(
            [
                str(peer_python()),
                "-m",
                "benchmarks.dramatiq_app",
                "latency",
                str(rate),
                str(seconds),
            ],
            cwd=ROOT,
            env=peer_env(url, **extra),
            check=True,
        )
        return read_latencies(latency_file, int(rate * seconds))
    finally:
        stop(worker)


FIGURES = ("drain-sync", "drain-async", "delay", "latency")


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--tasks", type=int, default=100_000, help="tasks per drain")
    parser.add_argument("--quick", action="store_true", help="a smoke run: small counts")
    parser.add_argument(
        "--only",
        choices=FIGURES,
        action="append",
        help="measure only this figure (repeatable); all of them by default",
    )
    options = parser.parse_args()
    wanted = set(options.only or FIGURES)
    tasks = 2_000 if options.quick else options.tasks
    sends = 300 if options.quick else 3_000
    seconds = 2.0 if options.quick else 10.0
    peer_python()
    with broker(options.broker) as url:
        os.environ["RABBITQ_BROKER_URL"] = url
        bench_app.app.broker_url = url
        queue = "bench"
        bench_app.noop.apply_async(queue=queue)  # declares the queue and the exchange
        purge(url, queue)
        peer_send(url, 1)  # Dramatiq declares its queue
        purge(url, PEER_QUEUE)
        print(f"broker {url.split('@')[-1]}, {os.cpu_count()} cores, {tasks:,} tasks\n", flush=True)

        if "drain-sync" in wanted:
            report(
                "drain sync no-op, 2 procs vs Dramatiq -p 2",
                ours_drain(url, queue, "bench.noop", tasks),
                peer_drain(url, tasks),
                "task/s",
            )
            purge(url, queue)
        if "drain-async" in wanted:
            report(
                "drain async no-op, 2 procs vs aiormq 2 procs",
                ours_drain(url, queue, "bench.anoop", tasks),
                raw_drain(url, queue, tasks),
                "task/s",
            )
            purge(url, queue)
        if "delay" in wanted:
            report(
                "delay() 1 thread vs Dramatiq send()",
                ours_delay(sends, threads=1),
                peer_send(url, sends),
                "msg/s",
            )
            purge(url, queue)
            purge(url, PEER_QUEUE)
        if "latency" in wanted:
            ours_lat = ours_latency(url, queue, 100, seconds, loglevel="WARNING")
            peer_lat = peer_latency(url, 100, seconds)
            report_latencies("send-to-start {} at 100/s vs Dramatiq", ours_lat, peer_lat)
        bench_app.app.close()


if __name__ == "__main__":
    main()
