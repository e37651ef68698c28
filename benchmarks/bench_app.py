"""Tasks the benchmarks run in real worker processes."""

from __future__ import annotations

import os
import time

import rabbitq

app = rabbitq.App("bench")


def _append(seconds: float) -> None:
    # One line per task (O_APPEND: safe across processes).
    fd = os.open(os.environ["RABBITQ_BENCH_LATENCY_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{seconds:.6f}\n".encode())
    finally:
        os.close(fd)


@app.task(name="bench.noop")
def noop() -> None:
    return None


@app.task(name="bench.stamp")
async def stamp(sent_at: float) -> None:
    # send-to-start latency, appended as one line (O_APPEND: safe across processes)
    _append(time.time() - sent_at)


@app.task(name="bench.late", bind=True)
async def late(self: rabbitq.Task) -> None:
    # lateness: start minus the ETA the message carried
    request = self.request
    assert request is not None and request.eta is not None
    _append(time.time() - request.eta.timestamp())


@app.task(name="bench.echo")
def echo(value: int) -> int:
    return value


@app.task(name="bench.chord_done")
def chord_done(results: list[object]) -> None:
    # end of a chord: the wall-clock time it ran, for the end-to-end figure
    _append(time.time())


@app.task(name="bench.anoop")
async def anoop() -> None:
    return None
