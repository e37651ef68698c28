"""What a status picture costs as the system grows: ``StatusCollector.collect()`` (what
``rabbitq status --watch``, the dashboard's ``/api/status`` and ``rabbitq exporter`` call)
against brokers holding 10, 100 and 500 task queues, each with its dead queue and a
newest-dead-letter record.

    .venv/bin/python benchmarks/bench_status.py [--broker URL --management-url URL]
                                                [--queues 10,100,500]

The first picture waits one heartbeat interval (2.5 s) by design; the figures are the
pictures after it (median and max of 10). Each run uses a fresh virtual host, deleted after.
Not a test: read the figures, and run it twice before believing a change.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import urllib.parse
import uuid
from pathlib import Path

import pika

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rabbitq.amqp.management import ManagementClient  # noqa: E402
from rabbitq.amqp.status_collector import StatusCollector  # noqa: E402
from rabbitq.status.newest import NEWEST_QUEUE_ARGUMENTS, newest_queue_name  # noqa: E402
from rabbitq.testing import LocalBroker  # noqa: E402

RECORD = json.dumps(
    {"id": "x", "task": "bench.t", "reason": "task-failed", "exception": "", "dead_at": "now"}
).encode()


def fill(url: str, queues: int) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    for index in range(queues):
        name = f"q{index}"
        channel.queue_declare(name, durable=True)
        channel.queue_declare(name + ".dead", durable=True)
        channel.queue_declare(
            newest_queue_name(name + ".dead"), durable=True, arguments=NEWEST_QUEUE_ARGUMENTS
        )
        channel.basic_publish("", name + ".dead", b"a dead letter")
        channel.basic_publish("", newest_queue_name(name + ".dead"), RECORD)
    connection.close()


def measure(broker: str, management: str, queues: int) -> tuple[float, float, int]:
    vhost = f"bench-{uuid.uuid4().hex[:6]}"
    client = ManagementClient(management)
    client.call("PUT", f"/api/vhosts/{vhost}")
    user = urllib.parse.urlsplit(management).username or "guest"
    client.call(
        "PUT",
        f"/api/permissions/{vhost}/{user}",
        {"configure": ".*", "write": ".*", "read": ".*"},
    )
    url = broker.rstrip("/") + "/" + vhost
    try:
        fill(url, queues)
        with StatusCollector(url, management) as collector:
            # Until the management API's statistics have counted the dead letters.
            while sum(dead.messages for dead in collector.collect().dead_queues) < queues:
                time.sleep(1)
            times = []
            for _ in range(10):
                started = time.perf_counter()
                snapshot = collector.collect()
                times.append(time.perf_counter() - started)
        records = sum(1 for dead in snapshot.dead_queues if dead.newest is not None)
        return statistics.median(times), max(times), records
    finally:
        client.call("DELETE", f"/api/vhosts/{vhost}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--broker")
    parser.add_argument("--management-url")
    parser.add_argument("--queues", default="10,100,500")
    options = parser.parse_args()
    local = None
    if options.broker is None:
        local = LocalBroker(management=True)
        local.start()
        options.broker, options.management_url = local.url, local.management_url
    try:
        print(f"{'task queues':>12} {'median ms':>10} {'max ms':>8} {'records read':>13}")
        for count in (int(n) for n in options.queues.split(",")):
            median, worst, records = measure(options.broker, options.management_url, count)
            print(f"{count:>12} {median * 1000:>10.1f} {worst * 1000:>8.1f} {records:>13}")
    finally:
        if local is not None:
            local.stop()


if __name__ == "__main__":
    main()
