"""The peer: Dramatiq's side of `bench_peers.py`, run only by the Dramatiq venv it builds.

    python -m benchmarks.dramatiq_app send COUNT          # prints the confirmed send() rate
    python -m benchmarks.dramatiq_app latency RATE SECS   # stamp messages at RATE a second
    dramatiq benchmarks.dramatiq_app -p 2                 # the worker

Imports nothing of rabbitq: it runs in a venv that has only Dramatiq.
"""

from __future__ import annotations

import os
import sys
import time

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

# Confirms on, as rabbitq's publishers always are, so both pay the broker's round trip.
broker = RabbitmqBroker(url=os.environ["RABBITQ_BENCH_URL"], confirm_delivery=True)
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="peer")
def noop() -> None:
    return None


@dramatiq.actor(queue_name="peer")
def stamp(sent_at: float) -> None:
    fd = os.open(os.environ["RABBITQ_BENCH_LATENCY_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{time.time() - sent_at:.6f}\n".encode())
    finally:
        os.close(fd)


def send(count: int) -> None:
    noop.send()  # connect and declare outside the timing
    started = time.perf_counter()
    for _ in range(count):
        noop.send()
    print(f"{count / (time.perf_counter() - started):.1f}", flush=True)


def latency(rate: int, seconds: float) -> None:
    interval = 1.0 / rate
    next_at = time.perf_counter()
    for _ in range(int(rate * seconds)):
        stamp.send(time.time())
        next_at += interval
        time.sleep(max(0.0, next_at - time.perf_counter()))


if __name__ == "__main__":
    if sys.argv[1] == "send":
        send(int(sys.argv[2]))
    else:
        latency(int(sys.argv[2]), float(sys.argv[3]))
    broker.close()
