"""A throwaway RabbitMQ cluster of several nodes on this machine, for tests of losing one.

Each node is a ``LocalBroker`` (its own data, ports and logs) that shares with the others
what Erlang clustering needs: one Erlang cookie, one epmd, and the list of peers it joins
through RabbitMQ's classic peer discovery. The first node starts alone; the rest join it.

    with LocalCluster(3) as cluster:
        app = rabbitq.App(broker=cluster.urls)   # failover over every node
        cluster.kill(cluster.queue_leader("tasks"))
        ...
        cluster.start(index)                     # the node rejoins with its data

``kill`` is SIGKILL (a crash); a killed node keeps its data directory, so ``start`` brings it
back as the same cluster member.
"""

from __future__ import annotations

import atexit
import json
import secrets
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType

from rabbitq.errors import ConfigurationError
from rabbitq.testing.local_broker import ClusterMembership, LocalBroker, free_port

JOIN_TIMEOUT = 90.0


class LocalCluster:
    """``size`` RabbitMQ nodes clustered together, each with the management plugin."""

    def __init__(self, size: int = 3) -> None:
        if size < 1:
            raise ConfigurationError(f"a cluster needs at least one node, not {size}")
        self.base = Path(tempfile.mkdtemp(prefix="rabbitq-cluster-"))
        run = uuid.uuid4().hex[:8]
        names = tuple(f"rabbitq-{run}-{index}@localhost" for index in range(size))
        epmd_port = free_port()
        cookie = secrets.token_hex(16).upper()
        self.nodes = [
            LocalBroker(
                management=True,
                data_dir=str(self.base / f"node{index}"),
                cluster=ClusterMembership(name, names, epmd_port, cookie),
            )
            for index, name in enumerate(names)
        ]
        atexit.register(self.stop)

    @property
    def urls(self) -> list[str]:
        """Each node's AMQP URL, in order: ``App(broker=cluster.urls)`` fails over among them."""
        return [node.url for node in self.nodes]

    @property
    def url(self) -> str:
        """The same, ``;``-joined, as one setting (``RABBITQ_BROKER_URL``, ``--broker``)."""
        return ";".join(self.urls)

    @property
    def management_urls(self) -> list[str]:
        return [node.management_url or "" for node in self.nodes]

    @property
    def node_names(self) -> list[str]:
        return [node.node_name for node in self.nodes]

    def __enter__(self) -> LocalCluster:
        self.start_all()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start_all(self) -> None:
        """The first node, then the others together (each joins the first), all members."""
        first, *rest = self.nodes
        try:
            first.start()
            # Launched from this thread, not helper threads: a node dies with the thread
            # that started it (``die_with_parent``).
            for node in rest:
                node.launch()
            for node in rest:
                node.wait_until_ready()
            self.wait_until_running(len(self.nodes))
        except BaseException:
            self.stop()  # no node left running when ``with`` never got in
            raise

    def kill(self, index: int) -> None:
        """SIGKILL node ``index`` (a crash): its data stays for ``start``."""
        self.nodes[index].kill()

    def start(self, index: int) -> None:
        """Start node ``index`` again; it rejoins the cluster with its data."""
        self.nodes[index].start()
        self.wait_until_running(len(self.running_indexes()))

    def running_indexes(self) -> list[int]:
        return [index for index, node in enumerate(self.nodes) if node.running]

    def rabbitmqctl(self, *args: str, via: int | None = None) -> str:
        """``rabbitmqctl`` against node ``via`` (default: the first one running)."""
        index = via if via is not None else self.running_indexes()[0]
        return self.nodes[index].rabbitmqctl(*args)

    def running_members(self) -> set[str]:
        """The node names the cluster counts as running, as a running node sees it."""
        status = json.loads(self.rabbitmqctl("cluster_status", "--formatter", "json"))
        return set(status["running_nodes"])

    def wait_until_running(self, count: int) -> None:
        deadline = time.monotonic() + JOIN_TIMEOUT
        members: set[str] = set()
        while time.monotonic() < deadline:
            members = self.running_members()
            if len(members) >= count:
                return
            time.sleep(0.5)
        raise ConfigurationError(
            f"the cluster has {len(members)} running nodes ({sorted(members)}) after "
            f"{JOIN_TIMEOUT:.0f}s, not {count}"
        )

    def queue_leader(self, queue: str, vhost: str = "/") -> int:
        """The index of the node that leads quorum queue ``queue`` (or hosts a classic one)."""
        rows = self.rabbitmqctl(
            "list_queues", "-p", vhost, "-q", "--no-table-headers", "name", "leader", "pid"
        )
        for row in rows.splitlines():
            name, leader, pid = row.split("\t")
            if name == queue:
                # A classic queue has no leader: its process's node hosts it.
                return self.node_names.index(leader or _node_of_pid(pid))
        raise ConfigurationError(f"no queue {queue!r} in vhost {vhost!r}")

    def stop(self) -> None:
        """Stop every node, then the shared epmd, and remove the cluster's directory."""
        # SIGKILL, not a graceful stop: the data goes with the directory, and a graceful
        # stop of each node in turn takes seconds apiece.
        for node in self.nodes:
            node.kill()
        if self.nodes:
            self.nodes[0]._kill_epmd()
        shutil.rmtree(self.base, ignore_errors=True)


def _node_of_pid(pid: str) -> str:
    """``<rabbit@host.1.2.3>`` (rabbitmqctl's form of a classic queue's process) to its node."""
    return pid.strip("<>").rsplit(".", 3)[0]
