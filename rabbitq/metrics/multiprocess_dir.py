"""The supervisor's side of a prometheus-client multiprocess directory: answering scrapes,
and folding each exited child's files into archives so they do not pile up.

Every child writes files of its own, named for its pid: ``counter_<pid>.db``,
``histogram_<pid>.db``, ``summary_<pid>.db``, ``gauge_<mode>_<pid>.db``. Left alone, a
supervisor that recycles its children keeps every one it ever ran, and each scrape reads
them all. When a child exits, ``retire`` does what ``mark_process_dead`` does (its ``live*``
gauges are dropped: it no longer counts as running anything), then adds its counters,
histograms and summaries, and its ``sum``/``min``/``max``/``mostrecent`` gauges, into
``<kind>_archive.db`` and deletes its files. ``MultiProcessCollector`` takes the kind from
the file name's first part (and a gauge's mode from its second; ``archive`` stands where
the pid would), so an archive is summed, or compared, like any other process's file: a
total is the same before and after a child is retired, and never goes backwards.

An ``all`` gauge (prometheus-client's default mode) is a series per pid, dead ones
included: its file stays, as prometheus-client keeps it.

Scrapes and retirements take one lock, so the supervisor's own ``/metrics`` never sees a
retired child twice (in its file and the archive) or not at all. An archive is rewritten
whole beside itself and renamed into place, so it is never half written. Another process
reading the same directory (a ``PROMETHEUS_MULTIPROC_DIR`` you share) does not take the
lock: a scrape of its own that meets a retirement may fail, or count that child twice, once.
"""

from __future__ import annotations

import glob
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from rabbitq.metrics.prometheus import prometheus_client

ARCHIVE = "archive"

# (value, timestamp): how prometheus-client's multiprocess files store a sample.
Stored = tuple[float, float]


def _added(old: Stored, new: Stored) -> Stored:
    return old[0] + new[0], max(old[1], new[1])


def _least(old: Stored, new: Stored) -> Stored:
    return new if new[0] < old[0] else old


def _greatest(old: Stored, new: Stored) -> Stored:
    return new if new[0] > old[0] else old


def _newest(old: Stored, new: Stored) -> Stored:
    return new if new[1] > old[1] else old


# How a dead process's samples join the archive, by file prefix: as MultiProcessCollector
# combines the files of several processes at a scrape.
COMBINE: dict[str, Callable[[Stored, Stored], Stored]] = {
    "counter": _added,
    "histogram": _added,  # buckets are stored per bucket, accumulated only at a scrape
    "summary": _added,
    "gauge_sum": _added,
    "gauge_min": _least,
    "gauge_max": _greatest,
    "gauge_mostrecent": _newest,
}


class MultiprocessDirectory:
    """A prometheus-client collector over ``path`` that can retire exited processes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._collector: Any = prometheus_client.multiprocess.MultiProcessCollector(None, path=path)  # type: ignore[no-untyped-call]

    def collect(self) -> Iterable[Any]:
        with self._lock:
            return list(self._collector.collect())

    def retire(self, pid: int) -> None:
        """``pid`` has exited: fold its files into the archives and delete them."""
        with self._lock:
            prometheus_client.multiprocess.mark_process_dead(pid, self.path)  # type: ignore[no-untyped-call]
            for dead in glob.glob(os.path.join(self.path, f"*_{pid}.db")):
                prefix, _, owner = os.path.basename(dead)[: -len(".db")].rpartition("_")
                combine = COMBINE.get(prefix)
                if owner != str(pid) or combine is None:
                    continue  # an ``all`` gauge: its pid's series stays
                _fold(dead, os.path.join(self.path, f"{prefix}_{ARCHIVE}.db"), combine)
                # After the archive holds its figures: a crash in between counts them
                # twice rather than lose them.
                os.remove(dead)


def _fold(dead: str, archive: str, combine: Callable[[Stored, Stored], Stored]) -> None:
    merged = _read(archive) if os.path.exists(archive) else {}
    for key, stored in _read(dead).items():
        merged[key] = combine(merged[key], stored) if key in merged else stored
    # Not ``*.db``: no scrape's glob picks up the file while it is written.
    fresh = archive + ".new"
    if os.path.exists(fresh):
        os.remove(fresh)  # left by a crash
    mmaped: Any = prometheus_client.mmap_dict.MmapedDict(fresh)  # type: ignore[no-untyped-call]
    try:
        for key, (value, timestamp) in merged.items():
            mmaped.write_value(key, value, timestamp)
    finally:
        mmaped.close()
    os.replace(fresh, archive)


def _read(path: str) -> dict[str, Stored]:
    values = prometheus_client.mmap_dict.MmapedDict.read_all_values_from_file(path)  # type: ignore[no-untyped-call]
    return {key: (value, timestamp) for key, value, timestamp, _ in values}
