"""Reading what the throttled app's tasks did (integration/apps/throttled_app.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
