"""A throwaway RabbitMQ node that needs no Docker: for tests, the demo and local development.

It runs the system's ``rabbitmq-server`` (Debian: ``apt-get install rabbitmq-server``) as the
current user, with everything private to a temporary directory: its own Erlang cookie (HOME),
its own epmd port, a unique node name, free AMQP/distribution/management ports, its own data
and logs. So it never collides with a system broker or with another test run, and stopping
it leaves no Erlang process behind.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from rabbitq.errors import ConfigurationError
from rabbitq.testing.certificates import Certificates, make_certificates

SERVER_CANDIDATES = ("/usr/lib/rabbitmq/bin/rabbitmq-server",)
START_TIMEOUT = 90.0
PR_SET_PDEATHSIG = 1
STOP_TIMEOUT = 20.0

_handed_out_ports: set[int] = set()
DLX_CONFIRM_TIMEOUT_MS = 5000


def free_port() -> int:
    """A TCP port nobody listens on now, and that this process has not handed out before."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port not in _handed_out_ports:
            _handed_out_ports.add(port)
            return port
    raise RuntimeError("no free TCP port found")


def find_rabbitmq_server() -> str:
    # /usr/sbin/rabbitmq-server is Debian's wrapper that switches to the rabbitmq user when
    # run as root; the real script runs as whoever we are, which a private node needs.
    for candidate in SERVER_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    for candidate in sorted(
        glob.glob("/usr/lib/rabbitmq/lib/rabbitmq_server-*/sbin/rabbitmq-server")
    ):
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("rabbitmq-server")
    if found and not found.startswith("/usr/sbin"):
        return found
    raise ConfigurationError(
        "rabbitmq-server is not installed; install it with `apt-get install rabbitmq-server` "
        "(scripts/bootstrap.sh does this when run as root), or point RABBITQ_BROKER_URL / "
        "RABBITQ_TEST_URL at a running broker"
    )


def _find_epmd() -> str | None:
    found = shutil.which("epmd")
    if found:
        return found
    candidates = sorted(glob.glob("/usr/lib/erlang/erts-*/bin/epmd"))
    return candidates[-1] if candidates else None


def die_with_parent() -> None:
    """Linux: the node's launcher gets SIGTERM (and stops the node) if our process dies.

    atexit does not run when the owner is killed by a signal (a CI timeout, Ctrl-C twice),
    and a forgotten node would keep its ports and memory. The signal follows the thread that
    started the node, so start it from a thread that lives as long as it should.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: atexit and stop() still apply


def log_tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` of a server's log, for an error that says why it did not start."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def port_open(port: int) -> bool:
    # Probing with a plain socket first keeps pika from logging a refused connection for
    # every attempt while the node boots.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@dataclass(frozen=True)
class ClusterMembership:
    """What a node of a ``LocalCluster`` shares with the others."""

    node_name: str
    peers: tuple[str, ...]  # every node's name, this one's included
    epmd_port: int
    cookie: str

    def config(self) -> list[str]:
        # Classic peer discovery: a starting node joins the first listed peer that is up
        # (nodes start one after another, so there is always one, but the first).
        return [
            "cluster_formation.peer_discovery_backend = classic_config",
            *(f"cluster_formation.classic_config.nodes.{i} = {peer}"
              for i, peer in enumerate(self.peers, start=1)),
        ]  # fmt: skip

    def advanced_config(self) -> list[str]:
        return [f"{{dead_letter_worker_publisher_confirm_timeout, {DLX_CONFIRM_TIMEOUT_MS}}}"]

    def write_cookie(self, home: Path) -> None:
        cookie = home / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(self.cookie)
            cookie.chmod(0o400)


class LocalBroker:
    """``with LocalBroker() as broker: connect(broker.url)``."""

    def __init__(
        self,
        management: bool = False,
        data_dir: str | None = None,
        consumer_timeout_ms: int | None = None,
        max_message_size: int | None = None,
        channel_tick_interval_ms: int | None = None,
        tls: bool = False,
        tls_require_client_certificate: bool = False,
        *,
        cluster: ClusterMembership | None = None,
    ) -> None:
        self.management = management
        # A node of a ``LocalCluster``: its name, cookie, epmd and peers are the cluster's.
        self.cluster = cluster
        self.consumer_timeout_ms = consumer_timeout_ms
        # How often each channel checks its deliveries against consumer_timeout (RabbitMQ's
        # default: every 60 s, so a short timeout is enforced up to a minute late). Not a
        # rabbitmq.conf key (3.10): it goes in advanced.config.
        self.channel_tick_interval_ms = channel_tick_interval_ms
        self.max_message_size = max_message_size  # bytes; larger publishes close the channel
        self._own_dir = data_dir is None
        self.base = Path(data_dir or tempfile.mkdtemp(prefix="rabbitq-broker-"))
        self.base.mkdir(parents=True, exist_ok=True)
        self.node_name = (
            cluster.node_name if cluster else f"rabbitq-{uuid.uuid4().hex[:10]}@localhost"
        )
        self.port = free_port()
        self.dist_port = free_port()
        self.epmd_port = cluster.epmd_port if cluster else free_port()
        self.management_port = free_port() if management else None
        # TLS: an amqps:// listener (and HTTPS management) beside the plain ones, with
        # certificates of a throwaway CA (``certificates.py``); the plain listener stays for
        # the readiness probe and for tests that compare the two.
        if tls_require_client_certificate and not tls:
            raise ConfigurationError("tls_require_client_certificate needs tls=True")
        self.tls = tls
        self.tls_require_client_certificate = tls_require_client_certificate
        self.tls_port = free_port() if tls else None
        self.management_tls_port = free_port() if tls and management else None
        self._certificates: Certificates | None = None
        self.log_path = self.base / "rabbitmq.log"
        self._process: subprocess.Popen[bytes] | None = None
        atexit.register(self.stop)

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def management_url(self) -> str | None:
        if self.management_port is None:
            return None
        return f"http://guest:guest@127.0.0.1:{self.management_port}/"

    @property
    def certificates(self) -> Certificates:
        """The CA, server and client certificates (``tls=True``), made on first use."""
        if not self.tls:
            raise ConfigurationError("this LocalBroker has no TLS listener (LocalBroker(tls=True))")
        if self._certificates is None:
            self._certificates = make_certificates(self.base / "tls")
        return self._certificates

    @property
    def tls_url(self) -> str:
        """``amqps://`` to the TLS listener, trusting this broker's CA (the URL's query)."""
        if self.tls_port is None:
            raise ConfigurationError("this LocalBroker has no TLS listener (LocalBroker(tls=True))")
        ca = urllib.parse.quote(str(self.certificates.ca), safe="/")
        return f"amqps://guest:guest@localhost:{self.tls_port}/?ca_certs={ca}"

    @property
    def tls_management_url(self) -> str | None:
        """HTTPS to the management API (``tls=True, management=True``)."""
        if self.management_tls_port is None:
            return None
        return f"https://guest:guest@localhost:{self.management_tls_port}/"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _environment(self) -> dict[str, str]:
        home = self.base / "home"
        for sub in ("home", "mnesia", "log"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        config = [
            f"listeners.tcp.default = 127.0.0.1:{self.port}",
            "loopback_users = none",
        ]
        if self.management_port is not None:
            config += [
                f"management.tcp.port = {self.management_port}",
                "management.tcp.ip = 127.0.0.1",
            ]
        if self.tls_port is not None:
            config += self._tls_config()
        if self.consumer_timeout_ms is not None:
            config.append(f"consumer_timeout = {self.consumer_timeout_ms}")
        if self.max_message_size is not None:
            config.append(f"max_message_size = {self.max_message_size}")
        if self.cluster is not None:
            config += self.cluster.config()
            self.cluster.write_cookie(home)
        (self.base / "rabbitmq.conf").write_text("\n".join(config) + "\n")
        (self.base / "advanced.config").write_text(self._advanced_config())
        plugins = "[rabbitmq_management]." if self.management else "[]."
        (self.base / "enabled_plugins").write_text(plugins + "\n")
        return {
            **os.environ,
            "HOME": str(home),  # private Erlang cookie
            "ERL_EPMD_PORT": str(self.epmd_port),  # private epmd: nothing shared to clean up
            "RABBITMQ_NODENAME": self.node_name,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            # Always our own (possibly empty) one, never the system's /etc/rabbitmq file.
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.base / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.base / "rabbitmq.pid"),
            "RABBITMQ_LOGS": "-",
        }

    def _tls_config(self) -> list[str]:
        files = self.certificates
        config = [
            f"listeners.ssl.default = 127.0.0.1:{self.tls_port}",
            f"ssl_options.cacertfile = {files.ca}",
            f"ssl_options.certfile = {files.server_cert}",
            f"ssl_options.keyfile = {files.server_key}",
            # A client certificate, when sent, must chain to our CA; required only if asked.
            "ssl_options.verify = verify_peer",
            "ssl_options.fail_if_no_peer_cert = "
            + ("true" if self.tls_require_client_certificate else "false"),
        ]
        if self.management_tls_port is not None:
            config += [
                f"management.ssl.port = {self.management_tls_port}",
                "management.ssl.ip = 127.0.0.1",
                f"management.ssl.cacertfile = {files.ca}",
                f"management.ssl.certfile = {files.server_cert}",
                f"management.ssl.keyfile = {files.server_key}",
            ]
        return config

    def _advanced_config(self) -> str:
        """Erlang terms for the settings rabbitmq.conf cannot carry."""
        rabbit = []
        if self.channel_tick_interval_ms is not None:
            rabbit.append(f"{{channel_tick_interval, {int(self.channel_tick_interval_ms)}}}")
        if self.cluster is not None:
            rabbit += self.cluster.advanced_config()
        if not rabbit:
            return "[].\n"
        return f"[{{rabbit, [{', '.join(rabbit)}]}}].\n"

    def start(self) -> None:
        if self.running:
            return
        self.launch()
        self.wait_until_ready()

    def launch(self) -> None:
        """Start the server process and return at once (``wait_until_ready`` waits for it)."""
        server = find_rabbitmq_server()
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        try:
            self._process = subprocess.Popen(
                [server],
                env=self._environment(),
                cwd=self.base,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        finally:
            log.close()

    def wait_until_ready(self) -> None:
        import pika  # only needed here; keeps `import rabbitq.testing` light

        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise ConfigurationError(
                    f"rabbitmq-server exited with {self._process.returncode} while starting; "
                    f"last log lines:\n{log_tail(self.log_path)}"
                )
            # The TLS listener (if any) opens with the plain one, but check: a bad
            # certificate file leaves the node up without it.
            if not port_open(self.port) or (
                self.tls_port is not None and not port_open(self.tls_port)
            ):
                time.sleep(0.2)
                continue
            try:
                pika.BlockingConnection(pika.URLParameters(self.url)).close()
                return
            except Exception:
                time.sleep(0.2)
        self.stop()
        raise ConfigurationError(
            f"rabbitmq-server did not accept connections within {START_TIMEOUT:.0f}s; "
            f"last log lines:\n{log_tail(self.log_path)}"
        )

    def _halt(self, signum: int) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signum)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        self._process = None
        if self.cluster is None:  # a cluster's epmd serves the nodes still up
            self._kill_epmd()

    def _kill_epmd(self) -> None:
        epmd = _find_epmd()
        if epmd is None:
            return
        subprocess.run(
            [epmd, "-kill"],
            env={**os.environ, "ERL_EPMD_PORT": str(self.epmd_port)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
            check=False,
        )

    def rabbitmqctl(self, *args: str) -> str:
        """Run ``rabbitmqctl`` against this node (e.g. to raise a memory alarm in a test)."""
        ctl = Path(find_rabbitmq_server()).with_name("rabbitmqctl")
        env = self._environment()
        result = subprocess.run(
            [str(ctl), "-n", self.node_name, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise ConfigurationError(f"rabbitmqctl {' '.join(args)} failed: {result.stderr}")
        return result.stdout

    def restart(self) -> None:
        """Stop gracefully and start again with the same name, ports and data."""
        self._halt(signal.SIGTERM)
        self.start()

    def kill(self) -> None:
        """SIGKILL the node (a crash): persistent messages survive, in-memory state does not."""
        self._halt(signal.SIGKILL)

    def stop(self) -> None:
        """Stop the node and, unless a data_dir was given, remove its directory."""
        self._halt(signal.SIGTERM)
        if self._own_dir and self.base.exists():
            shutil.rmtree(self.base, ignore_errors=True)
