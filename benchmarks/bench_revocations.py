"""What revokes kept in the broker cost: the revoke call, the time until a running node has
it, and a worker's start reading a long revocation log.

    .venv/bin/python benchmarks/bench_revocations.py [--broker URL] [--entries 20000]

* revoke: ``app.control.revoke(id, reply=True, destination=[node])`` against a running
  worker: the log append (confirmed) plus the broadcast and the node's reply, i.e. the time
  until the node has it; next to a bare ``inspect ping`` round trip (the pidbox floor);
* catch-up: a worker process's start reading a log of ``--entries`` revocations (the real
  ``RevocationFollower``), next to reading an empty log.

Not a test: read the figures, and run it twice before believing a change.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aio_pika
import pika

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import rabbitq  # noqa: E402
from rabbitq.amqp.revocation_log import RevocationFollower, declare_revocation_log  # noqa: E402
from rabbitq.revocations import Revocation  # noqa: E402
from rabbitq.testing import LocalBroker  # noqa: E402
from rabbitq.topology import REVOCATION_STREAM  # noqa: E402

APP_SOURCE = """
import rabbitq
app = rabbitq.App("bench-revoke")

@app.task(name="bench.noop", queue="bench-revoke")
def noop():
    return None
"""


def round_trips(app: rabbitq.App, node: str, count: int) -> tuple[list[float], list[float]]:
    pings, revokes = [], []
    for _ in range(count):
        started = time.perf_counter()
        assert app.control.ping(destination=[node], timeout=5)
        pings.append(time.perf_counter() - started)
        started = time.perf_counter()
        replies = app.control.revoke(str(uuid.uuid4()), destination=[node], reply=True, timeout=5)
        revokes.append(time.perf_counter() - started)
        assert replies, "the node did not answer the revoke"
    return pings, revokes


def fill_log(url: str, entries: int) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.confirm_delivery()
    for _ in range(entries):
        body = Revocation.now([str(uuid.uuid4())], 3600).encode()
        channel.basic_publish("", REVOCATION_STREAM, body, pika.BasicProperties(delivery_mode=2))
    connection.close()


async def catch_up(url: str) -> tuple[float, int]:
    connection = await aio_pika.connect_robust(url)
    kept: list[Revocation] = []
    started = time.perf_counter()
    follower = RevocationFollower(connection, kept.append)
    await follower.start()
    elapsed = time.perf_counter() - started
    await follower.close()
    await connection.close()
    return elapsed, len(kept)


async def declare(url: str) -> None:
    connection = await aio_pika.connect(url)
    await declare_revocation_log(connection, 86400)
    await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--broker", default=os.environ.get("RABBITQ_BENCH_URL"))
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--round-trips", type=int, default=50)
    options = parser.parse_args()
    broker = None
    url = options.broker
    if url is None:
        broker = LocalBroker()
        broker.start()
        url = broker.url
    try:
        with tempfile.TemporaryDirectory() as directory:
            Path(directory, "bench_revoke_app.py").write_text(APP_SOURCE)
            node = f"bench-{uuid.uuid4().hex[:6]}@bench"
            env = {**os.environ, "RABBITQ_BROKER_URL": url, "PYTHONPATH": f"{directory}:{ROOT}"}
            worker = subprocess.Popen(
                [sys.executable, "-m", "rabbitq", "worker", "-A", "bench_revoke_app",
                 "-Q", "bench-revoke", "-n", node, "--loglevel", "WARNING"],
                env=env,
            )  # fmt: skip
            try:
                app = rabbitq.App("bench", broker=url)
                deadline = time.monotonic() + 60
                while not app.control.ping(destination=[node], timeout=1):
                    assert time.monotonic() < deadline, "the worker did not answer"
                pings, revokes = round_trips(app, node, options.round_trips)
            finally:
                worker.terminate()
                worker.wait(60)
        print(f"inspect ping round trip      median {statistics.median(pings) * 1000:7.1f} ms")
        print(f"revoke until the node has it median {statistics.median(revokes) * 1000:7.1f} ms "
              f"(log append confirmed + broadcast + reply; {len(revokes)} revokes)")  # fmt: skip
        asyncio.run(declare(url))
        empty, _ = asyncio.run(catch_up(url))
        fill_log(url, options.entries)
        full, read = asyncio.run(catch_up(url))
        rate = options.entries / max(full - empty, 1e-9)
        print(f"worker start, log read       {empty * 1000:7.1f} ms with the log as it was; "
              f"{full * 1000:7.1f} ms with {options.entries} entries more "
              f"({read} read, {rate:,.0f} entries/s)")  # fmt: skip
    finally:
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    main()
