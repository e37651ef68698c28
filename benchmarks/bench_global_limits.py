"""Global limits across real worker processes: the figures issue 20 asks for.

    .venv/bin/python benchmarks/bench_global_limits.py [--broker URL] [--seconds 30]

Each part starts ``rabbitq worker`` processes of ``integration/apps/throttled_app.py`` (every
run records its start and end with its pid) and reads back what ran:

* **rate**: 3 processes of concurrency 8 on 2 queues, a global ``Rate("20/s", burst=5)``:
  the start rate over ``--seconds`` and the most starts in any 1 s window (bound: burst + 20);
* **rate_limit**: Celery's per-process ``rate_limit="10/s"``, with 1 and then 3 processes:
  the total scales with the processes (10/s, then 30/s);
* **concurrency**: ``Concurrency(3)`` across 3 processes of concurrency 8: the most running
  at once, and after a SIGKILL of a process holding slots, how long until 3 run again;
* **mutex**: 1,000 tasks over 10 keys on 3 processes: the most of one key at once, all run.

A throwaway local broker is started unless ``--broker`` (or $RABBITQ_BENCH_URL) is given.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import rabbitq  # noqa: E402
from benchmarks.bench_core import argument_parser, broker  # noqa: E402
from integration.limits_support import (  # noqa: E402
    APP,
    Run,
    most_at_once,
    most_starts_in_a_window,
    runs,
)
from integration.support import WorkerProcess, wait_for  # noqa: E402

CONCURRENCY = 8


class Part:
    """One part's broker structures (queues and limit names) and its record file."""

    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.tag = f"{name}{uuid.uuid4().hex[:6]}"
        self.queues = [self.tag, self.tag + "-b"]
        self.dir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
        self.record = self.dir / "ran.txt"

    @contextmanager
    def workers(self, count: int, **env: str) -> Iterator[list[WorkerProcess]]:
        environment = {"RABBITQ_TEST_QUEUE": self.queues[0], "RABBITQ_TEST_LIMIT": self.tag,
                       **env}  # fmt: skip
        with ExitStack() as stack:
            started = []
            for number in range(count):
                worker = WorkerProcess(
                    self.url, ",".join(self.queues), self.record,
                    self.dir / f"worker{number}-{time.monotonic_ns()}.log",
                    "-c", str(CONCURRENCY), "--loglevel", "WARNING", env=environment, app=APP,
                )  # fmt: skip
                stack.callback(worker.stop)
                started.append(worker)
            for number, worker in enumerate(started):
                worker.wait_until_consuming(60, count=number + 1)
            yield started

    def send(self, task: str, calls: list[tuple[object, ...]]) -> None:
        app = rabbitq.App("throttled", broker=self.url, default_queue=self.queues[0])
        for number, args in enumerate(calls):
            app.send_task(f"{APP}.{task}", args, queue=self.queues[number % 2])
        app.close()

    def runs(self, **kwargs: dict[int, float]) -> list[Run]:
        return runs(self.record, **kwargs)

    def wait_for_runs(self, count: int, timeout: float, *, ended: bool = True) -> None:
        wait_for(
            lambda: len([r for r in self.runs() if r.end is not None or not ended]) >= count,
            timeout,
            lambda: f"{len(self.runs())} of {count} ran (logs in {self.dir})",
        )


def starts_per_second(found: list[Run], seconds: float) -> tuple[float, list[Run]]:
    """Starts in ``seconds`` from the first, per second; and those runs."""
    first = min(run.start for run in found)
    inside = [run for run in found if run.start < first + seconds]
    return len(inside) / seconds, inside


def rate_part(url: str, seconds: float) -> None:
    part = Part(url, "rate")
    burst = 5
    with part.workers(3, RABBITQ_TEST_RATE="20/s", RABBITQ_TEST_BURST=str(burst)):
        part.send("rated", [(f"t{i}",) for i in range(int(20 * seconds) + 100)])
        part.wait_for_runs(int(20 * seconds) + 21, seconds + 60, ended=False)
    rate, inside = starts_per_second(part.runs(), seconds)
    pids = Counter(run.pid for run in inside)
    print(f"rate 20/s burst {burst}, 3 processes x c{CONCURRENCY} on 2 queues, {seconds:.0f} s:")
    print(f"  {rate:.2f} starts/s ({(rate - 20) / 20:+.1%} of 20/s); most in any 1 s window: "
          f"{most_starts_in_a_window(inside)} (bound {burst + 20}); "
          f"starts per process {sorted(pids.values())}")  # fmt: skip


def rate_limit_part(url: str, seconds: float) -> None:
    print("rate_limit='10/s' (per process):")
    for processes in (1, 3):
        part = Part(url, "local")
        expected = 10 * processes
        with part.workers(processes, RABBITQ_TEST_RATE="10/s"):
            part.send("locally_rated", [(f"t{i}",) for i in range(int(expected * seconds) + 50)])
            part.wait_for_runs(int(expected * seconds) + expected, seconds + 60, ended=False)
        rate, _ = starts_per_second(part.runs(), seconds)
        print(f"  {processes} process(es): {rate:.2f} starts/s (expected {expected}/s)")


def concurrency_part(url: str) -> None:
    part = Part(url, "cap")
    tasks = 90
    with part.workers(3, RABBITQ_TEST_CONCURRENCY="3") as started:
        part.send("held", [(f"t{i}", 0.5) for i in range(tasks)])
        wait_for(lambda: len(part.runs()) >= 9, 60)
        holder = next(run.pid for run in part.runs() if run.end is None)
        victim = next(worker for worker in started if worker.pid == holder)
        os.kill(victim.pid, signal.SIGKILL)
        killed_at = time.time()
        victim.process.wait(10)
        wait_for(lambda: _labels_done(part) >= {f"t{i}" for i in range(tasks)}, 180)
    found = part.runs(ended_by={victim.pid: killed_at})
    after = [run for run in found if run.start > killed_at]
    back = _back_to(after, 3, killed_at)
    print(f"concurrency 3 across 3 processes x c{CONCURRENCY}, {tasks} tasks of 0.5 s:")
    print(f"  most running at once: {most_at_once(found)}; after SIGKILL of a holder: 3 "
          f"running again after {back:.2f} s; most at once after the kill: "
          f"{most_at_once(after)}; every task ran: "
          f"{_labels_done(part) >= {f't{i}' for i in range(tasks)}}")  # fmt: skip


def _labels_done(part: Part) -> set[str]:
    return {run.label for run in part.runs() if run.end is not None}


def _back_to(found: list[Run], level: int, since: float) -> float:
    """Seconds from ``since`` until ``level`` runs of ``found`` went on at once."""
    events = sorted(
        [(run.start, 1) for run in found]
        + [(run.end if run.end is not None else float("inf"), -1) for run in found],
        key=lambda event: (event[0], event[1]),
    )
    now = 0
    for at, step in events:
        now += step
        if now >= level:
            return at - since
    return float("nan")


def mutex_part(url: str) -> None:
    part = Part(url, "mutex")
    tasks, keys = 1000, 10
    with part.workers(3):
        began = time.time()
        part.send("per_user", [(f"u{i % keys}", f"t{i}", 0.01) for i in range(tasks)])
        part.wait_for_runs(tasks, 600)
        elapsed = max(run.end or 0.0 for run in part.runs()) - began
    found = part.runs()
    worst = max(most_at_once(found, f"u{key}") for key in range(keys))
    labels = Counter(run.label for run in found)
    print(f"mutex per key, {tasks} tasks of 10 ms over {keys} keys, 3 processes:")
    print(f"  most of one key at once: {worst}; ran {len(labels)} distinct, "
          f"{sum(labels.values()) - len(labels)} twice; {tasks / elapsed:.0f} tasks/s "
          f"({keys} keys x 100 serial per key)")  # fmt: skip


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--parts", default="rate,rate_limit,concurrency,mutex")
    options = parser.parse_args()
    parts = options.parts.split(",")
    with broker(options.broker) as url:
        if "rate" in parts:
            rate_part(url, options.seconds)
        if "rate_limit" in parts:
            rate_limit_part(url, min(options.seconds, 10.0))
        if "concurrency" in parts:
            concurrency_part(url)
        if "mutex" in parts:
            mutex_part(url)


if __name__ == "__main__":
    main()
