"""A throwaway Redis server for tests and the demo: the system's ``redis-server`` on a free
port, nothing saved to disk, stopped with its owner (as ``LocalBroker``)."""

from __future__ import annotations

import atexit
import contextlib
import shutil
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path
from types import TracebackType

from rabbitq.errors import ConfigurationError
from rabbitq.testing.certificates import Certificates, make_certificates
from rabbitq.testing.local_broker import die_with_parent, free_port, port_open

START_TIMEOUT = 30.0


class LocalRedis:
    """``with LocalRedis() as redis: App(result_backend=redis.url)``.

    ``tls=True``: TLS only (no plain port), with certificates of a throwaway CA
    (``certificates.py``); ``url`` is then ``rediss://`` trusting that CA (redis-py's
    ``ssl_ca_certs`` in the query)."""

    def __init__(self, port: int | None = None, *, tls: bool = False) -> None:
        self.port = port or free_port()
        self.tls = tls
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._certificates: Certificates | None = None
        if tls:
            self._directory = Path(tempfile.mkdtemp(prefix="rabbitq-redis-"))
            self._certificates = make_certificates(self._directory)
            ca = urllib.parse.quote(str(self._certificates.ca), safe="/")
            self.url = f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={ca}"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def certificates(self) -> Certificates:
        if self._certificates is None:
            raise ConfigurationError("this LocalRedis has no TLS (LocalRedis(tls=True))")
        return self._certificates

    def _listen_arguments(self) -> list[str]:
        if self._certificates is None:
            return ["--port", str(self.port)]
        files = self._certificates
        return [
            "--port", "0", "--tls-port", str(self.port),
            "--tls-cert-file", str(files.server_cert), "--tls-key-file", str(files.server_key),
            "--tls-ca-cert-file", str(files.ca), "--tls-auth-clients", "no",
        ]  # fmt: skip

    def start(self) -> LocalRedis:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not shutil.which(binary):
            raise ConfigurationError(
                "redis-server not found; install it (Debian: apt-get install redis-server)"
            )
        self._process = subprocess.Popen(
            [
                binary,
                *self._listen_arguments(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        atexit.register(self.stop)
        deadline = time.monotonic() + START_TIMEOUT
        while not port_open(self.port):
            if self._process.poll() is not None:
                raise ConfigurationError(f"redis-server exited with {self._process.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise ConfigurationError(f"redis-server did not listen within {START_TIMEOUT}s")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)
            if process.poll() is None:
                process.kill()
        if self.tls:
            shutil.rmtree(self._directory, ignore_errors=True)

    def __enter__(self) -> LocalRedis:
        return self.start()

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self.stop()
