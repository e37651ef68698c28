"""The node-loss drill that ``test_cluster_node_loss.py`` asserts on and
``benchmarks/bench_cluster_failover.py`` reports.

Under a steady load of confirmed publishes (``cl.record``), countdowns (``cl.on_time``) and a
chord (``cl.part`` x N -> ``cl.body``), with a beat ticking every second, one node of a
``LocalCluster`` is SIGKILLed. Every queue is a quorum queue (``default_queue_type: quorum``),
the clients (publisher, worker process, beat) list every node, the node they connect to first
being ``clients_on``; the task queue, the delay levels and the chord queue were declared with
their leaders on ``leaders_on``. The report says what was confirmed, what ran and how often,
whether any countdown started early, how often the chord body ran, and how long each part of
the system stalled.
"""

from __future__ import annotations

import collections
import itertools
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import rabbitq
from integration.beat_support import BeatProcess, TickRecorder, every_second_schedule
from integration.support import WorkerProcess, wait_for
from rabbitq.errors import PublishError
from rabbitq.testing import LocalCluster

CHORD_SIZE = 100
PUBLISH_PAUSE = 0.01  # about 100 publishes a second: a steady load, not a flood
COUNTDOWN_EVERY = 5  # each fifth publish is a countdown of 1-3 s
COUNTDOWN_MAX = 3
SETTLE_TIMEOUT = float(os.environ.get("RABBITQ_DRILL_SETTLE", "120"))


@dataclass
class DrillReport:
    killed_at: float = 0.0
    confirmed: list[str] = field(default_factory=list)  # labels whose publish returned
    refused: list[str] = field(default_factory=list)  # labels whose publish raised
    runs: collections.Counter[str] = field(default_factory=collections.Counter)
    starts: list[tuple[float, str]] = field(default_factory=list)  # (started, label)
    early: list[tuple[str, float, float]] = field(default_factory=list)  # label, start, eta
    countdowns: int = 0
    chord_runs: list[str] = field(default_factory=list)  # "<count> <sum>" per body run
    ticks: list[float] = field(default_factory=list)  # received, epoch seconds
    publish_stall: float = 0.0  # the longest a single confirmed publish took around the kill
    stopped_at: float = 0.0  # the load ended
    # Countdowns confirmed but not run while the victim was down, until it came back.
    held_countdowns: int = 0
    restarted_at: float = 0.0
    logs: str = ""

    @property
    def missing(self) -> list[str]:
        return [label for label in self.confirmed if self.runs[label] == 0]

    @property
    def duplicates(self) -> int:
        return sum(count - 1 for count in self.runs.values() if count > 1)

    @property
    def worker_stall(self) -> float:
        """From the kill to the first task that started after it."""
        after = [start for start, _ in self.starts if start > self.killed_at]
        return min(after) - self.killed_at if after else float("inf")

    @property
    def beat_stall(self) -> float:
        """The longest gap between ticks around the kill (a tick a second when all is well)."""
        around = [t for t in self.ticks if t > self.killed_at - 2]
        gaps = [b - a for a, b in itertools.pairwise(around)]
        return max(gaps, default=float("inf"))

    def summary(self) -> str:
        return (
            f"confirmed {len(self.confirmed)}, refused {len(self.refused)}, "
            f"missing {len(self.missing)}, duplicates {self.duplicates}, "
            f"countdowns {self.countdowns} ({len(self.early)} early), "
            f"chord body runs {self.chord_runs}, countdowns held until the node returned "
            f"{self.held_countdowns}; stalls: publish {self.publish_stall:.2f} s, "
            f"worker {self.worker_stall:.2f} s, beat {self.beat_stall:.2f} s"
        )


def _countdown(label: str) -> bool:
    return int(label[1:]) % COUNTDOWN_EVERY == 0


def urls_from(cluster: LocalCluster, first: int) -> list[str]:
    """Every node's URL, ``first`` at the head: the node a client connects to."""
    urls = cluster.urls
    return urls[first:] + urls[:first]


def run_node_loss_drill(
    cluster: LocalCluster,
    work_dir: Path,
    *,
    victim: int,
    clients_on: int,
    leaders_on: int,
    before: float = 3.0,
    after: float = 6.0,
) -> DrillReport:
    """Load, kill ``victim`` after ``before`` seconds, load ``after`` seconds more, then wait
    (with the victim still down) until every confirmed task ran that can; then start the
    victim again and wait for the rest."""
    run = uuid.uuid4().hex[:8]
    queue, beat_queue = f"cluster{run}", f"beat{run}"
    routing = work_dir / "routing.yaml"
    routing.write_text("default_queue_type: quorum\n")
    record_file = work_dir / "ran.txt"
    env = {"RABBITQ_ROUTING": str(routing), "RABBITQ_TEST_QUEUE": queue}
    report = DrillReport()
    watcher = next(i for i in range(len(cluster.nodes)) if i not in (victim, clients_on))

    # The queues' leaders go where they are first declared (RabbitMQ's client-local default):
    # a worker that connects to ``leaders_on`` declares the task queue, the delay levels and
    # the chord queue there, and stops.
    placing = WorkerProcess(
        ";".join(urls_from(cluster, leaders_on)), queue, record_file,
        work_dir / "placing.log", env=env, app="integration.apps.cluster_app",
    )  # fmt: skip
    try:
        placing.wait_until_consuming(timeout=60)
    finally:
        placing.stop()
    placement = rabbitq.App(broker=urls_from(cluster, leaders_on), routing=routing)
    placement.ensure_queue(beat_queue)
    placement.close()

    client_urls = urls_from(cluster, clients_on)
    worker = WorkerProcess(
        ";".join(client_urls), queue, record_file, work_dir / "worker.log",
        env=env, app="integration.apps.cluster_app",
    )  # fmt: skip
    recorder = TickRecorder(cluster.urls[watcher], beat_queue)
    schedule = every_second_schedule(work_dir / "schedule.yaml", beat_queue)
    beat = BeatProcess(";".join(client_urls), schedule, f"cluster{run}", work_dir / "beat.log")
    app = rabbitq.App(broker=client_urls, routing=routing, default_queue=queue)
    stop = threading.Event()
    try:
        worker.wait_until_consuming(timeout=60)
        wait_for(lambda: len(recorder.ticks) >= 1, 30, beat.log)
        rabbitq.chord(
            [rabbitq.signature("cl.part", (i,), app=app, queue=queue) for i in range(CHORD_SIZE)],
            rabbitq.signature("cl.body", ("drill",), app=app, queue=queue),
        ).apply_async()
        publisher = threading.Thread(
            target=_publish, args=(app, queue, report, stop), name="drill-publisher", daemon=True
        )
        publisher.start()
        time.sleep(before)
        report.killed_at = time.time()
        cluster.kill(victim)
        time.sleep(after)
        stop.set()
        publisher.join(60)
        report.stopped_at = time.time()
        # With the victim still down: every confirmed task but the countdowns RabbitMQ 3.10
        # holds between delay levels (see ``held_countdowns``) runs.
        wait_for(
            lambda: (
                _read(record_file, report)
                and not [label for label in report.missing if not _countdown(label)]
                and report.chord_runs
            ),
            SETTLE_TIMEOUT,
            lambda: f"{report.summary()}\nworker log:\n{worker.log()[-4000:]}",
        )
        time.sleep(max(0.0, COUNTDOWN_MAX + 1 - (time.time() - report.stopped_at)))
        _read(record_file, report)
        report.held_countdowns = len(report.missing)
        report.ticks = [tick.received for tick in recorder.ticks]
        # The victim comes back: whatever it held (3.10) is delivered, on time or late.
        report.restarted_at = time.time()
        cluster.start(victim)
        wait_for(
            lambda: _read(record_file, report) and not report.missing,
            SETTLE_TIMEOUT,
            lambda: f"{report.summary()}\nworker log:\n{worker.log()[-4000:]}",
        )
        # Whatever was still to come (a duplicate, a second chord body) has had its chance.
        time.sleep(2.0)
        _read(record_file, report)
    finally:
        stop.set()
        app.close()
        beat.stop()
        recorder.stop()
        worker.stop()
        report.logs = f"worker:\n{worker.log()[-4000:]}\nbeat:\n{beat.log()[-4000:]}"
    return report


def _publish(app: rabbitq.App, queue: str, report: DrillReport, stop: threading.Event) -> None:
    for index in range(1_000_000):
        if stop.is_set():
            return
        label = f"t{index}"
        started = time.monotonic()
        try:
            if index % COUNTDOWN_EVERY == 0:
                countdown = 1 + index % COUNTDOWN_MAX
                app.send_task("cl.on_time", (label,), queue=queue, countdown=countdown)
                report.countdowns += 1
            else:
                app.send_task("cl.record", (label,), queue=queue)
        except PublishError as exc:
            report.refused.append(f"{label} {type(exc).__name__}: {exc}")
            continue
        report.publish_stall = max(report.publish_stall, time.monotonic() - started)
        report.confirmed.append(label)
        time.sleep(PUBLISH_PAUSE)


def _read(record_file: Path, report: DrillReport) -> bool:
    """Fold the record file into ``report``; True (for ``wait_for``)."""
    report.runs.clear()
    report.starts.clear()
    report.early.clear()
    report.chord_runs.clear()
    if not record_file.exists():
        return True
    for line in record_file.read_text().splitlines():
        kind, _task_id, started, *rest = line.split()
        if kind == "chord":
            report.chord_runs.append(" ".join(rest[1:]))
            continue
        label = rest[0]
        report.runs[label] += 1
        report.starts.append((float(started), label))
        if kind == "due" and float(started) < float(rest[1]):
            report.early.append((label, float(started), float(rest[1])))
    return True
