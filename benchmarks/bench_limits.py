"""What a limit costs when it is not the bottleneck, and whether a global rate holds.

    python benchmarks/bench_limits.py [--tasks 2000] [--url amqp://...]

One worker (rabbitq.testing.Worker, concurrency 8) on one broker drains the same number of
no-op tasks: unlimited, under a concurrency limit far above 8, under a mutex with a key per
task, and under a global rate of 200/s (burst 1); and unlimited tasks of an app that also has
a limited task (the limits' middleware installed). Prints tasks/s and the ratio to unlimited;
for the rate, the observed start rate and the most starts in any 1 s window. A throwaway
LocalBroker is started unless --url is given.
"""

from __future__ import annotations

import argparse
import contextlib
import threading
import time
import uuid
from collections.abc import Iterator

import rabbitq
from rabbitq.testing import LocalBroker, Worker


@contextlib.contextmanager
def broker(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    with LocalBroker() as local:
        yield local.url


def drain(url: str, tasks: int, limits: list[rabbitq.Rate | rabbitq.Concurrency | rabbitq.Mutex],
          keyed: bool, neighbour: bool = False) -> tuple[float, list[float]]:  # fmt: skip
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    app = rabbitq.App("bench", broker=url, default_queue=queue)
    starts: list[float] = []
    done = threading.Event()

    @app.task(limits=limits)
    def noop(key: str) -> None:
        starts.append(time.perf_counter())
        if len(starts) >= tasks:
            done.set()

    if neighbour:  # a limited task beside it: the limits' middleware is installed

        @app.task(limits=[rabbitq.Concurrency(f"n{queue}", 1)])
        def limited() -> None:
            pass

    for i in range(tasks):
        noop.delay(f"k{i}" if keyed else "k")
    with Worker(app, [queue], concurrency=8):
        began = time.perf_counter()
        done.wait(600)
        elapsed = time.perf_counter() - began
    app.close()
    return tasks / elapsed, starts


def most_in_a_second(starts: list[float]) -> int:
    starts = sorted(starts)
    most = first = 0
    for last, at in enumerate(starts):
        while at - starts[first] >= 1.0:
            first += 1
        most = max(most, last - first + 1)
    return most


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--url")
    options = parser.parse_args()
    tag = uuid.uuid4().hex[:6]
    with broker(options.url) as url:
        base, _ = drain(url, options.tasks, [], keyed=False)
        print(f"unlimited:            {base:8.0f} tasks/s")
        beside, _ = drain(url, options.tasks, [], keyed=False, neighbour=True)
        print(f"unlimited, beside a limited task: {beside:8.0f} tasks/s  "
              f"({beside / base:.2f}x unlimited)")  # fmt: skip
        for label, limit, keyed in (
            ("concurrency 1000", rabbitq.Concurrency(f"c{tag}", 1000), False),
            ("mutex, key per task", rabbitq.Mutex(f"m{tag}", key="key"), True),
        ):
            rate, _ = drain(url, options.tasks, [limit], keyed)
            print(f"{label + ':':22}{rate:8.0f} tasks/s  ({rate / base:.2f}x unlimited)")
        count = min(options.tasks, 1000)
        _, starts = drain(url, count, [rabbitq.Rate(f"r{tag}", "200/s")], keyed=False)
        span = max(starts) - min(starts)
        print(f"rate 200/s:           {(count - 1) / span:8.1f} starts/s observed, "
              f"at most {most_in_a_second(starts)} in any 1 s window")  # fmt: skip


if __name__ == "__main__":
    main()
