"""A throwaway PostgreSQL server for tests and the demo: the system's PostgreSQL binaries
(Debian: ``apt-get install postgresql``), a cluster initialised in a temporary directory,
listening on 127.0.0.1 on a free port with trust authentication, stopped and removed with its
owner (as ``LocalBroker``). It never touches a system cluster.

``initdb`` and ``postgres`` refuse to run as root, so when the tests are root the server runs
as the unprivileged ``postgres`` user (Debian's package creates it) and owns the directory.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from rabbitq.errors import ConfigurationError
from rabbitq.testing.local_broker import die_with_parent, free_port, log_tail

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
DATABASE = "rabbitq"
SERVER_USER = "postgres"


def find_postgres_bin() -> Path:
    """The directory of ``initdb`` and ``postgres``: Debian keeps them off the PATH."""
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version, reverse=True):
        if os.access(os.path.join(candidate, "initdb"), os.X_OK):
            return Path(candidate)
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise ConfigurationError(
        "PostgreSQL is not installed; install it with `apt-get install postgresql` "
        "(scripts/bootstrap.sh does this when run as root)"
    )


def _in_order(*steps: Callable[[], None]) -> None:
    for step in steps:
        step()


def _version(path: str) -> int:
    name = Path(path).parent.name
    return int(name) if name.isdigit() else 0


class LocalPostgres:
    """``with LocalPostgres() as postgres: App(result_backend=postgres.url)``."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.base = Path(tempfile.mkdtemp(prefix="rabbitq-postgres-"))
        self.data_dir = self.base / "data"
        self.log_path = self.base / "postgres.log"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"
        self._process: subprocess.Popen[bytes] | None = None
        atexit.register(self.stop)

    def start(self) -> LocalPostgres:
        binaries = find_postgres_bin()
        as_server_user = self._server_user()
        run = [str(binaries / "initdb"), "-D", str(self.data_dir), "-U", "postgres"]
        run += ["--auth=trust", "--no-sync", "--encoding=UTF8", "--no-locale"]
        initdb = subprocess.run(
            run,
            capture_output=True,
            cwd=self.base,  # the server user may not enter ours
            preexec_fn=as_server_user,
            timeout=120,
            check=False,
        )
        if initdb.returncode != 0:
            raise ConfigurationError(f"initdb failed: {initdb.stderr.decode(errors='replace')}")
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        try:
            self._process = subprocess.Popen(
                [
                    str(binaries / "postgres"),
                    *("-D", str(self.data_dir), "-p", str(self.port)),
                    *("-h", "127.0.0.1", "-k", str(self.base)),
                    # A test database: durability buys nothing and costs every commit a flush.
                    *("-c", "fsync=off", "-c", "synchronous_commit=off"),
                    *("-c", "full_page_writes=off"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.base,
                preexec_fn=lambda: _in_order(as_server_user, die_with_parent),
            )
        finally:
            log.close()
        self._wait_until_ready(binaries)
        created = subprocess.run(
            [str(binaries / "createdb"), *self._client_args(), DATABASE],
            capture_output=True,
            timeout=60,
            check=False,
        )
        if created.returncode != 0:
            self.stop()
            raise ConfigurationError(f"createdb failed: {created.stderr.decode(errors='replace')}")
        return self

    def _client_args(self) -> list[str]:
        return ["-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]

    def _server_user(self) -> Callable[[], None]:
        """What the child runs before exec: become ``postgres`` if we are root, else nothing.

        The credentials change first: changing them clears the parent-death signal, which
        ``die_with_parent`` sets afterwards.
        """
        if os.geteuid() != 0:
            return lambda: None
        try:
            user = pwd.getpwnam(SERVER_USER)
        except KeyError:
            raise ConfigurationError(
                f"running as root, and PostgreSQL refuses root: needs a {SERVER_USER!r} user "
                "(Debian's postgresql package creates it)"
            ) from None
        for path in (self.base, *self.base.rglob("*")):
            os.chown(path, user.pw_uid, user.pw_gid)

        def become() -> None:
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)

        return become

    def _wait_until_ready(self, binaries: Path) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        probe = [str(binaries / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise ConfigurationError(
                    f"postgres exited with {self._process.returncode} while starting:\n"
                    f"{log_tail(self.log_path)}"
                )
            if subprocess.run(probe, timeout=10, check=False).returncode == 0:
                return
            time.sleep(0.05)
        self.stop()
        raise ConfigurationError(
            f"postgres did not accept connections within {START_TIMEOUT:.0f}s:\n"
            f"{log_tail(self.log_path)}"
        )

    def stop(self) -> None:
        """Stop the server (a fast shutdown: clients are disconnected) and remove its files."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            # SIGTERM is PostgreSQL's "smart" shutdown, which waits for every client to leave.
            process.send_signal(signal.SIGINT)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        if self.base.exists():
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self.stop()
