"""A real ``rabbitq worker --processes 2 --metrics-port`` scraped over HTTP: the supervisor's
``/metrics`` adds up what both processes ran, and keeps what a recycled process counted
while deleting its files."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import rabbitq
from integration.apps import core_app
from integration.metrics_support import Scrape, free_port
from integration.support import WorkerProcess, running_worker, wait_for

# The worker's metrics, not the broker's version: once, in the first pass.
pytestmark = [pytest.mark.timeout(240), pytest.mark.first_pass_only]

PREFETCH = 5


@contextmanager
def metered_worker(
    queue: str, tmp_path: Path, *extra: str, env: dict[str, str] | None = None
) -> Iterator[tuple[WorkerProcess, int]]:
    port = free_port()
    with running_worker(
        core_app.app.broker_url,
        queue,
        tmp_path,
        "--processes", "2", "--prefetch", str(PREFETCH),
        "--metrics-port", str(port), "--metrics-bind", "127.0.0.1",
        *extra,
        env=env,
    ) as worker:  # fmt: skip
        worker.wait_until_consuming(count=2)
        yield worker, port


def test_a_two_process_worker_s_metrics_add_up_to_exactly_what_ran(
    app: rabbitq.App, unique_name: str, tmp_path: Path
) -> None:
    (tmp_path / "tmp").mkdir()
    with metered_worker(unique_name, tmp_path, env={"TMPDIR": str(tmp_path / "tmp")}) as (
        worker,
        port,
    ):
        for n in range(20):
            core_app.record.apply_async((f"ok{n}",), queue=unique_name)
        for n in range(5):
            core_app.fail.apply_async((f"bad{n}",), queue=unique_name)
        for n in range(4):
            core_app.flaky.apply_async((f"flaky{n}", 1, 0), queue=unique_name)
        seen: list[float] = []

        def settled() -> bool:
            scrape = Scrape(port)
            ended = scrape.total("rabbitq_tasks_total", outcome="succeeded") + scrape.total(
                "rabbitq_dead_letters_total"
            )
            seen.append(ended)
            return ended >= 29

        wait_for(settled, 60, worker.log)
        assert seen == sorted(seen)  # scraped while they ran: never backwards
        scrape = Scrape(port)
        assert scrape.total("rabbitq_tasks_total", task="it.record", outcome="succeeded") == 20
        assert scrape.total("rabbitq_tasks_total", task="it.fail", outcome="failed") == 5
        assert scrape.total("rabbitq_tasks_total", task="it.flaky", outcome="retried") == 4
        assert scrape.total("rabbitq_tasks_total", task="it.flaky", outcome="succeeded") == 4
        assert scrape.total("rabbitq_tasks_total") == 33
        dead = {"task": "it.fail", "queue": unique_name, "reason": "task-failed"}
        assert scrape.total("rabbitq_dead_letters_total", **dead) == 5
        assert scrape.total("rabbitq_dead_letters_total") == 5
        assert scrape.total("rabbitq_task_runtime_seconds_count") == 33
        # Every message here was published by rabbitq: each run has its wait.
        assert scrape.total("rabbitq_task_queue_wait_seconds_count") == 33
        # Both processes' live gauges, summed.
        assert scrape.total("rabbitq_worker_processes") == 2
        assert scrape.total("rabbitq_worker_prefetch", queue=unique_name) == 2 * PREFETCH
    # The private multiprocess directory went with the worker.
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_recycled_process_s_counts_stay_while_its_live_gauges_and_files_go(
    app: rabbitq.App, unique_name: str, tmp_path: Path
) -> None:
    directory = tmp_path / "multiproc"
    directory.mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(directory)}
    with metered_worker(unique_name, tmp_path, "--max-tasks-per-child", "3", env=env) as (
        worker,
        port,
    ):
        for n in range(12):
            core_app.record.apply_async((f"ok{n}",), queue=unique_name)
        seen: list[float] = []

        def all_ran() -> bool:
            seen.append(Scrape(port).total("rabbitq_tasks_total", outcome="succeeded"))
            return seen[-1] >= 12

        wait_for(all_ran, 90, worker.log)
        assert seen == sorted(seen) and seen[-1] == 12

        def files_only_of_the_two_processes_alive() -> bool:
            alive = {pid for pid in children_started(worker) if is_alive(pid)}
            return (
                len(alive) == 2
                and pids_of(directory, "gauge_livesum") == alive
                and pids_of(directory, "*") <= alive
                and Scrape(port).total("rabbitq_worker_processes") == 2
            )

        # Each recycled process's files would otherwise stay as long as the supervisor.
        wait_for(files_only_of_the_two_processes_alive, 60, worker.log)
        started = children_started(worker)
        assert worker.log().count("recycled; starting a fresh one") >= 2 and len(started) > 2
        assert not pids_of(directory, "*") & started - {p for p in started if is_alive(p)}
        # The gone processes' counts are in the supervisor's archive: the totals still add up.
        assert (directory / "counter_archive.db").exists()
        assert (directory / "histogram_archive.db").exists()
        scrape = Scrape(port)
        assert scrape.total("rabbitq_tasks_total", outcome="succeeded") == 12
        assert scrape.total("rabbitq_task_runtime_seconds_count") == 12
        assert scrape.total("rabbitq_worker_prefetch", queue=unique_name) == 2 * PREFETCH


def pids_of(directory: Path, kind: str) -> set[int]:
    """The processes with a multiprocess file of ``kind`` (``counter_<pid>.db``; ``*``: any
    kind), the supervisor's archives (``counter_archive.db``) left out."""
    owners = (path.stem.rsplit("_", 1)[1] for path in directory.glob(f"{kind}_*.db"))
    return {int(owner) for owner in owners if owner.isdigit()}


def children_started(worker: WorkerProcess) -> set[int]:
    return {
        int(pid) for pid in re.findall(r"started worker process \S+ \(pid (\d+)\)", worker.log())
    }


def is_alive(pid: int) -> bool:
    """Running (not a zombie its supervisor has yet to reap)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
