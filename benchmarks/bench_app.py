"""Tasks the benchmarks run in real worker processes."""

from __future__ import annotations

import os
import time

import rabbitq

app = rabbitq.App("bench")


@app.task(name="bench.noop")
def noop() -> None:
    return None


@app.task(name="bench.stamp")
async def stamp(sent_at: float) -> None:
    # send-to-start latency, appended as one line (O_APPEND: safe across processes)
    line = f"{time.time() - sent_at:.6f}\n".encode()
    fd = os.open(os.environ["RABBITQ_BENCH_LATENCY_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@app.task(name="bench.late", bind=True)
async def late(self: rabbitq.Task) -> None:
    # lateness: start minus the ETA the message carried
    request = self.request
    assert request is not None and request.eta is not None
    line = f"{time.time() - request.eta.timestamp():.6f}\n".encode()
    fd = os.open(os.environ["RABBITQ_BENCH_LATENCY_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
