"""Starting worker processes of the throttled app (integration/apps/throttled_app.py), sending
its tasks, and reading what they did."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import rabbitq
from integration.support import WorkerProcess, wait_for

APP = "integration.apps.throttled_app"


@dataclass(frozen=True)
class Run:
    label: str
    start: float
    end: float | None
    pid: int


def runs(record_file: Path, *, ended_by: dict[int, float] | None = None) -> list[Run]:
    """Each run's start and end (by label and process), in start order. ``ended_by``: the
    time a killed process's unfinished runs ended."""
    starts: dict[tuple[str, int], float] = {}
    ends: dict[tuple[str, int], float] = {}
    if not record_file.exists():
        return []
    for line in record_file.read_text().splitlines():
        label, event, at, pid = line.split(" ")
        (starts if event == "start" else ends)[(label, int(pid))] = float(at)
    found = [
        Run(label, start, ends.get((label, pid), (ended_by or {}).get(pid)), pid)
        for (label, pid), start in starts.items()
    ]
    return sorted(found, key=lambda run: run.start)


def most_at_once(found: list[Run], group: str | None = None) -> int:
    """The most runs (of ``group``: the label's part before '/') going on at one moment."""
    events: list[tuple[float, int]] = []
    for run in found:
        if group is not None and run.label.split("/")[0] != group:
            continue
        events.append((run.start, 1))
        events.append((run.end if run.end is not None else float("inf"), -1))
    events.sort(key=lambda event: (event[0], event[1]))  # an end before a start at a tie
    most = now = 0
    for _at, step in events:
        now += step
        most = max(most, now)
    return most


def most_starts_in_a_window(found: list[Run], window: float = 1.0) -> int:
    starts = sorted(run.start for run in found)
    most = 0
    first = 0
    for last, at in enumerate(starts):
        while at - starts[first] >= window:
            first += 1
        most = max(most, last - first + 1)
    return most


@contextmanager
def workers(
    broker_url: str,
    queue: str,
    tmp_path: Path,
    count: int,
    *,
    concurrency: int = 8,
    killed_after: bool = False,
    **env: str,
) -> Iterator[list[WorkerProcess]]:
    """``count`` worker processes on ``queue``; stopped at the end, or SIGKILLed
    (``killed_after``) by a test that leaves long tasks running and only looked at them."""
    environment = {"RABBITQ_TEST_QUEUE": queue, "RABBITQ_TEST_LIMIT": queue, **env}
    with ExitStack() as stack:
        started = []
        for number in range(count):
            worker = WorkerProcess(
                broker_url, queue, tmp_path / "ran.txt", tmp_path / f"worker{number}.log",
                "-c", str(concurrency), "--loglevel", "WARNING", env=environment, app=APP,
            )  # fmt: skip
            stack.callback(worker.stop)
            if killed_after:
                stack.callback(worker.kill)  # runs first: stop() then only closes the log
            started.append(worker)
        for number, worker in enumerate(started):
            worker.wait_until_consuming(count=number + 1)
        yield started


def publish(app: rabbitq.App, task: str, calls: list[tuple[object, ...]]) -> None:
    for args in calls:
        app.send_task(f"{APP}.{task}", args)


def all_ran(record: Path, expected: int, timeout: float = 120.0) -> None:
    wait_for(
        lambda: len([run for run in runs(record) if run.end is not None]) >= expected,
        timeout,
        lambda: f"{len(runs(record))} of {expected} ran",
    )
