"""A worker's ``/metrics`` (``rabbitq worker --metrics-port``), served over HTTP by
prometheus-client's own server, on a thread of its own.

A single worker process serves its own registry: prometheus-client's default one, where the
worker's metrics (``worker_metrics.py``) are, with the client's process and platform metrics
and any the app defines. Recycled (``--max-tasks-per-child``), such a process replaces its
image, so its counters start again from zero: Prometheus' ``rate`` and ``increase`` take
that as the counter reset it is.

Under ``--processes N`` the supervisor serves, in prometheus-client's multiprocess mode:

* before it spawns any child it points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh private
  directory, ``$TMPDIR/rabbitq-metrics-<its pid>-*`` (unless the environment names one
  already), so every child, a fresh interpreter inheriting the environment, has it set
  before anything imports the client, and writes its figures to files of its own there;
* it answers each scrape with the sum over those files (``multiprocess_dir.py``);
* when a child exits (recycled, or died), its live gauges stop counting, and its counters
  and histograms are added into the supervisor's archive files and its own files deleted:
  the worker's totals never go backwards while the supervisor lives, and the directory
  holds files for the children alive, not for every child ever run;
* at exit the private directory is removed. A directory named in the environment is the
  user's: it is neither wiped nor removed (wipe it between runs, as prometheus-client asks).

A supervisor killed outright (SIGKILL, the OOM killer) cannot remove its directory. The
next supervisor to start removes such leftovers: a ``rabbitq-metrics-<pid>-*`` directory of
the same user whose supervisor is gone. Gone means both that no process has that pid and
that nobody holds the lock the supervisor keeps on the directory's ``owner.lock`` for its
whole life: a pid alone could be another pid namespace's (a ``/tmp`` shared between
containers), and the lock alone is not there yet while a supervisor is just starting.

This module imports prometheus-client only once the directory is set.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import stat
import tempfile
import threading
from typing import TYPE_CHECKING, Any

from rabbitq.errors import ConfigurationError

if TYPE_CHECKING:
    from rabbitq.metrics.multiprocess_dir import MultiprocessDirectory

log = logging.getLogger("rabbitq.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# A worker is scraped from the Prometheus server's host, and inside a container loopback is
# unreachable from outside: all interfaces, as Prometheus' own exporters do. It serves
# counts by task and queue name, never a message's contents or an action
# (``--metrics-bind 127.0.0.1`` keeps even the names local).
DEFAULT_BIND = "0.0.0.0"
PRIVATE_PREFIX = "rabbitq-metrics-"
OWNER_LOCK = "owner.lock"  # not ``*.db``: prometheus-client's collector never reads it
_PRIVATE_NAME = re.compile(re.escape(PRIVATE_PREFIX) + r"(\d+)-")


class MetricsEndpoint:
    """``/metrics`` on ``bind:port`` until ``close``."""

    def __init__(
        self,
        server: Any,
        thread: threading.Thread,
        directory: str | None,
        owned: bool,
        files: MultiprocessDirectory | None = None,
        owner_lock: int | None = None,
    ) -> None:
        self.server = server
        self.thread = thread
        self.directory = directory  # the multiprocess directory, if any
        self.owned = owned  # created here: removed at close
        self.files = files  # the supervisor's: retires exited children
        self.owner_lock = owner_lock  # the descriptor holding the private directory's lock

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    @classmethod
    def supervising(cls, port: int, bind: str = DEFAULT_BIND) -> MetricsEndpoint:
        """The supervisor's: sets up the multiprocess directory; call before spawning."""
        directory = os.environ.get(MULTIPROC_ENV)
        owned = not directory
        owner_lock = None
        if not directory:
            remove_leftover_directories(tempfile.gettempdir())
            directory = tempfile.mkdtemp(prefix=f"{PRIVATE_PREFIX}{os.getpid()}-")
            owner_lock = _hold_owner_lock(directory)
            os.environ[MULTIPROC_ENV] = directory
        elif not os.path.isdir(directory):
            raise ConfigurationError(f"${MULTIPROC_ENV} names {directory}, not a directory")
        try:
            from rabbitq.metrics.multiprocess_dir import MultiprocessDirectory

            files = MultiprocessDirectory(directory)
            server, thread = serve_registry(_registry_of(files), port, bind)
        except BaseException:
            if owned:
                shutil.rmtree(directory, ignore_errors=True)
                del os.environ[MULTIPROC_ENV]
            if owner_lock is not None:
                os.close(owner_lock)
            raise
        log.info("serving metrics of all worker processes on http://%s:%d/metrics", bind, port)
        return cls(server, thread, directory, owned, files, owner_lock)

    @classmethod
    def single_process(cls, port: int, bind: str = DEFAULT_BIND) -> MetricsEndpoint:
        """A lone worker process's: its own registry (or the multiprocess directory the
        environment names, if it names one: then the figures are in its files)."""
        from rabbitq.metrics.prometheus import prometheus_client

        directory = os.environ.get(MULTIPROC_ENV) or None
        if directory:
            from rabbitq.metrics.multiprocess_dir import MultiprocessDirectory

            registry = _registry_of(MultiprocessDirectory(directory))
        else:
            registry = prometheus_client.REGISTRY
        server, thread = serve_registry(registry, port, bind)
        log.info("serving metrics on http://%s:%d/metrics", bind, port)
        return cls(server, thread, directory, owned=False)

    def process_exited(self, pid: int) -> None:
        """A child is gone: its live gauges stop counting, its counts join the archive and
        its files are deleted (``multiprocess_dir.py``)."""
        if self.files is None:
            return
        try:
            self.files.retire(pid)
        except Exception:
            # A file the child left unreadable (killed mid-write) must not stop the
            # supervisor: what could not be archived stays where it is.
            log.exception("could not archive the metrics files of exited process %d", pid)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.discard()

    def discard(self) -> None:
        """Remove the private directory (also when exiting at once, without ``close``)."""
        if self.owned and self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            with contextlib.suppress(KeyError):
                if os.environ[MULTIPROC_ENV] == self.directory:
                    del os.environ[MULTIPROC_ENV]
            self.owned = False
        if self.owner_lock is not None:
            os.close(self.owner_lock)
            self.owner_lock = None


def remove_leftover_directories(parent: str) -> list[str]:
    """Remove the private directories in ``parent`` that supervisors killed outright left
    behind (see the module's docstring); the paths removed."""
    removed: list[str] = []
    try:
        names = sorted(os.listdir(parent))
    except OSError:
        return removed  # an unreadable $TMPDIR: mkdtemp will say what is wrong with it
    for name in names:
        found = _PRIVATE_NAME.match(name)
        path = os.path.join(parent, name)
        if found is None or not _is_own_directory(path):
            continue
        if _pid_running(int(found.group(1))) or not _owner_gone(path):
            continue
        shutil.rmtree(path, ignore_errors=True)
        log.info("removed %s, left by a worker supervisor that is gone", path)
        removed.append(path)
    return removed


def _is_own_directory(path: str) -> bool:
    """A directory (not a link to one) of this user's: another's is not ours to judge."""
    try:
        found = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(found.st_mode) and found.st_uid == os.getuid()


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _owner_gone(directory: str) -> bool:
    """Nobody holds ``owner.lock``: the kernel lets a lock go with its holder, however it
    died. A directory without the file (one from before it, or just being created) is
    left alone: it cannot be told apart from one in use."""
    try:
        descriptor = os.open(os.path.join(directory, OWNER_LOCK), os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(descriptor)  # and with it the lock, if it was taken
    return True


def _hold_owner_lock(directory: str) -> int:
    """Lock ``owner.lock`` for as long as the descriptor returned stays open. Descriptors
    are not inherited (PEP 446): a spawned child never holds it past the supervisor."""
    descriptor = os.open(os.path.join(directory, OWNER_LOCK), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return descriptor


def _registry_of(files: MultiprocessDirectory) -> Any:
    from rabbitq.metrics.prometheus import prometheus_client

    registry = prometheus_client.CollectorRegistry()
    registry.register(files)
    return registry


def serve_registry(registry: Any, port: int, bind: str) -> tuple[Any, threading.Thread]:
    """``registry`` at ``http://bind:port/metrics`` on a daemon thread (prometheus-client's
    server): the server (``shutdown()`` it) and its thread."""
    from rabbitq.metrics.prometheus import prometheus_client

    try:
        server, thread = prometheus_client.start_http_server(port, addr=bind, registry=registry)
    except OSError as exc:
        raise ConfigurationError(f"cannot serve metrics on {bind}:{port}: {exc}") from exc
    return server, thread
