"""The supervisor's multiprocess directory (``metrics/multiprocess_dir.py``,
``metrics/endpoint.py``), over files prometheus-client itself writes: an exited child's
figures move into the archive and its files go, with no total changing; private
directories left by a killed supervisor are removed at the next start, and only those."""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import prometheus_client
import prometheus_client.values
import pytest

from rabbitq.metrics.endpoint import (
    OWNER_LOCK,
    MetricsEndpoint,
    _hold_owner_lock,
    remove_leftover_directories,
)
from rabbitq.metrics.multiprocess_dir import MultiprocessDirectory

Scraped = dict[tuple[str, tuple[tuple[str, str], ...]], float]  # (name, labels): value

# Above any pid_max Linux allows: no process has it.
NO_SUCH_PID = 4_194_304 + 1


class Child:
    """The metrics one worker process would write, as prometheus-client writes them in
    multiprocess mode, under a pid of the spec's choosing."""

    def __init__(self, pid: int, monkeypatch: pytest.MonkeyPatch) -> None:
        self.pid = pid
        monkeypatch.setattr(
            prometheus_client.values,
            "ValueClass",
            prometheus_client.values.MultiProcessValue(lambda: pid),  # type: ignore[no-untyped-call]
        )
        self.tasks = prometheus_client.Counter("t_tasks", "Runs.", ["task"], registry=None)
        self.runtime = prometheus_client.Histogram(
            "t_runtime_seconds", "Run time.", ["task"], buckets=(0.1, 1.0), registry=None
        )
        self.wait = prometheus_client.Summary("t_wait_seconds", "Wait.", registry=None)
        self.in_flight = prometheus_client.Gauge(
            "t_in_flight", "Running.", multiprocess_mode="livesum", registry=None
        )
        self.handled = prometheus_client.Gauge(
            "t_handled", "Handled.", multiprocess_mode="sum", registry=None
        )
        self.lowest = prometheus_client.Gauge(
            "t_lowest", "Lowest.", multiprocess_mode="min", registry=None
        )
        self.highest = prometheus_client.Gauge(
            "t_highest", "Highest.", multiprocess_mode="max", registry=None
        )
        self.latest = prometheus_client.Gauge(
            "t_latest", "Latest.", multiprocess_mode="mostrecent", registry=None
        )
        self.per_pid = prometheus_client.Gauge("t_per_pid", "Per pid.", registry=None)  # all

    def works(self, n: int) -> None:
        """``n`` runs' worth of figures, different for each pid."""
        for run in range(n):
            self.tasks.labels("ok").inc()
            self.runtime.labels("ok").observe(0.05 * (run + 1))
            self.wait.observe(0.5)
        self.tasks.labels(f"only-{self.pid}").inc(self.pid)
        self.in_flight.set(1)
        self.handled.set(n)
        self.lowest.set(self.pid)
        self.highest.set(self.pid)
        self.latest.set(self.pid)
        self.per_pid.set(self.pid)


@pytest.fixture
def directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "multiproc"
    path.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(path))
    yield path
    cleanups = prometheus_client.values._multi_process_cleanups  # closes the children's files
    while cleanups:
        cleanups.pop()()


@pytest.fixture
def spawn(directory: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[int, int], Child]:
    def spawned(pid: int, runs: int) -> Child:
        child = Child(pid, monkeypatch)
        child.works(runs)
        return child

    return spawned


def scrape(files: MultiprocessDirectory) -> Scraped:
    registry = prometheus_client.CollectorRegistry()
    registry.register(files)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in registry.collect()
        for sample in family.samples
    }


def without(scraped: Scraped, *names: str) -> Scraped:
    return {key: value for key, value in scraped.items() if key[0] not in names}


def files_of(directory: Path, pid: int) -> list[str]:
    return sorted(path.name for path in directory.glob(f"*_{pid}.db"))


def test_retiring_an_exited_process_changes_no_counter_histogram_summary_or_gauge(
    directory: Path, spawn: Callable[[int, int], Child]
) -> None:
    spawn(101, 3)
    spawn(102, 5)
    files = MultiprocessDirectory(str(directory))
    before = scrape(files)
    files.retire(101)
    after = scrape(files)
    # The live gauge is the one figure meant to change: 101 runs nothing any more.
    assert without(after, "t_in_flight") == without(before, "t_in_flight")
    assert after[("t_tasks_total", (("task", "ok"),))] == 8
    assert after[("t_tasks_total", (("task", "only-101"),))] == 101
    assert after[("t_runtime_seconds_count", (("task", "ok"),))] == 8
    assert after[("t_handled", ())] == 8
    assert after[("t_lowest", ())] == 101
    assert after[("t_highest", ())] == 102


def test_an_exited_process_s_files_are_deleted_and_an_archive_per_kind_holds_its_figures(
    directory: Path, spawn: Callable[[int, int], Child]
) -> None:
    spawn(101, 3)
    spawn(102, 5)
    count = len(list(directory.iterdir()))
    MultiprocessDirectory(str(directory)).retire(101)
    # Only the ``all`` gauge stays: a series per pid, dead ones included.
    assert files_of(directory, 101) == ["gauge_all_101.db"]
    assert len(files_of(directory, 102)) == 9
    assert sorted(path.name for path in directory.glob("*_archive.db")) == [
        "counter_archive.db",
        "gauge_max_archive.db",
        "gauge_min_archive.db",
        "gauge_mostrecent_archive.db",
        "gauge_sum_archive.db",
        "histogram_archive.db",
        "summary_archive.db",
    ]
    assert len(list(directory.iterdir())) < count


def test_a_hundred_recycled_processes_leave_the_files_of_the_living_and_one_archive_each(
    directory: Path, spawn: Callable[[int, int], Child]
) -> None:
    files = MultiprocessDirectory(str(directory))
    spawn(1, 2)
    for pid in range(2, 102):
        spawn(pid, 2)
        files.retire(pid - 1)
        assert scrape(files)[("t_tasks_total", (("task", "ok"),))] == 2 * pid
    files.retire(101)
    scraped = scrape(files)
    assert scraped[("t_tasks_total", (("task", "ok"),))] == 202
    assert scraped[("t_runtime_seconds_count", (("task", "ok"),))] == 202
    assert scraped[("t_wait_seconds_count", ())] == 202
    assert ("t_in_flight", ()) not in scraped  # no process is alive
    assert scraped[("t_lowest", ())] == 1 and scraped[("t_highest", ())] == 101
    assert scraped[("t_latest", ())] == 101  # the newest value set, not the greatest
    # The 'all' gauge's files stay; everything else is 7 archives.
    assert len(list(directory.glob("*.db"))) == 7 + 101


def test_a_retired_process_s_live_gauges_stop_counting_as_mark_process_dead_has_them(
    directory: Path, spawn: Callable[[int, int], Child]
) -> None:
    spawn(101, 1)
    spawn(102, 1)
    files = MultiprocessDirectory(str(directory))
    assert scrape(files)[("t_in_flight", ())] == 2
    files.retire(101)
    assert scrape(files)[("t_in_flight", ())] == 1
    assert not (directory / "gauge_livesum_101.db").exists()


def test_an_all_gauge_keeps_the_retired_process_s_series_labelled_by_its_pid(
    directory: Path, spawn: Callable[[int, int], Child]
) -> None:
    spawn(101, 1)
    files = MultiprocessDirectory(str(directory))
    files.retire(101)
    assert scrape(files)[("t_per_pid", (("pid", "101"),))] == 101


def test_retiring_a_process_that_wrote_nothing_or_twice_changes_nothing(
    directory: Path, spawn: Callable[[int, int], Child]
) -> None:
    spawn(101, 3)
    files = MultiprocessDirectory(str(directory))
    files.retire(101)
    before = scrape(files)
    files.retire(101)
    files.retire(999)
    assert scrape(files) == before


def test_a_scrape_meanwhile_never_counts_a_retiring_process_twice_or_misses_it(
    directory: Path, spawn: Callable[[int, int], Child]
) -> None:
    for pid in range(1, 41):
        spawn(pid, 1)
    files = MultiprocessDirectory(str(directory))
    done = threading.Event()
    totals: list[float] = []
    failures: list[BaseException] = []

    def scraping() -> None:
        while not done.is_set():
            try:
                totals.append(scrape(files)[("t_tasks_total", (("task", "ok"),))])
            except BaseException as exc:  # a file gone between the glob and its read
                failures.append(exc)
                return

    scraper = threading.Thread(target=scraping)
    scraper.start()
    for pid in range(1, 41):
        files.retire(pid)
    done.set()
    scraper.join()
    assert failures == []
    assert set(totals) <= {40.0}
    assert scrape(files)[("t_tasks_total", (("task", "ok"),))] == 40


def test_the_archive_is_read_by_prometheus_client_s_own_collector_too(
    directory: Path, spawn: Callable[[int, int], Child]
) -> None:
    spawn(101, 3)
    spawn(102, 5)
    MultiprocessDirectory(str(directory)).retire(101)
    registry = prometheus_client.CollectorRegistry()
    prometheus_client.multiprocess.MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    text = prometheus_client.generate_latest(registry).decode()
    assert 't_tasks_total{task="ok"} 8.0' in text
    assert 't_runtime_seconds_count{task="ok"} 8.0' in text


def test_a_file_that_cannot_be_archived_stays_and_the_supervisor_carries_on(
    directory: Path, spawn: Callable[[int, int], Child]
) -> None:
    spawn(101, 3)
    # A child killed while growing its file: the length written says more than is there.
    (directory / "counter_102.db").write_bytes((1 << 20).to_bytes(4, "little") + bytes(60))
    files = MultiprocessDirectory(str(directory))
    endpoint = MetricsEndpoint(None, threading.Thread(), str(directory), False, files)
    endpoint.process_exited(102)
    assert (directory / "counter_102.db").exists()
    (directory / "counter_102.db").unlink()
    endpoint.process_exited(101)
    assert scrape(files)[("t_tasks_total", (("task", "ok"),))] == 3


# Leftover private directories


def private(parent: Path, pid: int, locked: bool = False) -> tuple[Path, int | None]:
    path = Path(tempfile.mkdtemp(prefix=f"rabbitq-metrics-{pid}-", dir=parent))
    (path / "counter_7.db").write_bytes(b"")
    if locked:
        return path, _hold_owner_lock(str(path))
    (path / OWNER_LOCK).write_bytes(b"")
    return path, None


def test_a_private_directory_whose_supervisor_is_gone_is_removed(tmp_path: Path) -> None:
    left, _ = private(tmp_path, NO_SUCH_PID)
    assert remove_leftover_directories(str(tmp_path)) == [str(left)]
    assert not left.exists()


def test_a_private_directory_of_a_running_pid_stays(tmp_path: Path) -> None:
    mine, _ = private(tmp_path, os.getpid())
    assert remove_leftover_directories(str(tmp_path)) == []
    assert mine.exists()


def test_a_private_directory_whose_lock_is_held_stays_though_its_pid_is_unknown_here(
    tmp_path: Path,
) -> None:
    # A supervisor in another pid namespace sharing this /tmp: its pid means nothing here.
    other, descriptor = private(tmp_path, NO_SUCH_PID, locked=True)
    assert descriptor is not None
    try:
        assert remove_leftover_directories(str(tmp_path)) == []
        assert other.exists()
    finally:
        os.close(descriptor)
    assert remove_leftover_directories(str(tmp_path)) == [str(other)]


def test_a_directory_without_the_lock_file_or_of_another_name_stays(tmp_path: Path) -> None:
    unlocked, _ = private(tmp_path, NO_SUCH_PID)
    (unlocked / OWNER_LOCK).unlink()
    old_style = tmp_path / "rabbitq-metrics-k2j3h4"
    old_style.mkdir()
    someone_else = tmp_path / f"other-metrics-{NO_SUCH_PID}-x"
    someone_else.mkdir()
    (tmp_path / f"rabbitq-metrics-{NO_SUCH_PID}-file").write_bytes(b"")
    assert remove_leftover_directories(str(tmp_path)) == []
    assert len(list(tmp_path.iterdir())) == 4


def test_a_supervisor_names_its_directory_for_its_pid_and_clears_leftovers_as_it_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    left, _ = private(tmp_path, NO_SUCH_PID)
    endpoint = MetricsEndpoint.supervising(0, "127.0.0.1")
    try:
        assert not left.exists()
        assert endpoint.directory is not None
        name = Path(endpoint.directory).name
        assert re.fullmatch(rf"rabbitq-metrics-{os.getpid()}-\w+", name)
        # Its pid runs (and it holds the lock): a supervisor starting now leaves it alone.
        assert remove_leftover_directories(str(tmp_path)) == []
    finally:
        endpoint.close()
    assert list(tmp_path.iterdir()) == []
