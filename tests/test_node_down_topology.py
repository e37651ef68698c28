"""When a cluster has lost a node, what lived only there (a classic queue, a stream without a
replica here) is left as it is instead of stopping a publisher, a worker or a beat
(docs/cluster.md). The broker's answers are played by stand-ins for the client library's
channel objects; ``integration/test_cluster_node_loss.py`` meets the same answers on a real
cluster.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiormq.exceptions
import pika.exceptions
import pytest

from rabbitq.amqp import declare
from rabbitq.amqp.beat_link import BeatLink
from rabbitq.amqp.revocation_log import RevocationFollower
from rabbitq.errors import TopologyConflictError
from rabbitq.testing.local_broker import ClusterMembership
from rabbitq.testing.local_cluster import _node_of_pid

DOWN = "NOT_FOUND - home node 'rabbit@a' of durable queue 'q' in vhost '/' is down or inaccessible"
MISSING = "NOT_FOUND - no queue 'q' in vhost '/'"


def test_home_node_down_is_told_apart_from_a_missing_queue() -> None:
    assert declare.home_node_down(aiormq.exceptions.ChannelNotFoundEntity(DOWN))
    assert not declare.home_node_down(aiormq.exceptions.ChannelNotFoundEntity(MISSING))


class AioChannel:
    def __init__(self, broker: AioBroker) -> None:
        self.broker = broker

    async def declare_queue(self, name: str, **kwargs: Any) -> Any:
        self.broker.declared.append(name)
        if name in self.broker.down:
            raise aiormq.exceptions.ChannelNotFoundEntity(DOWN)
        return self

    async def declare_exchange(self, *args: Any, **kwargs: Any) -> None:
        return None

    async def get_queue(self, name: str, ensure: bool = False) -> Any:
        broker = self.broker

        class Queue:
            async def bind(self, *args: Any, **kwargs: Any) -> None:
                broker.bound.append(name)

        return Queue()


class AioBroker:
    def __init__(self, down: set[str]) -> None:
        self.down = down
        self.declared: list[str] = []
        self.bound: list[str] = []

    @contextlib.asynccontextmanager
    async def _channel(self) -> AsyncIterator[AioChannel]:
        yield AioChannel(self)

    def channel(self) -> Any:
        return self._channel()


async def test_a_classic_queue_on_a_node_that_is_down_is_left_as_it_is() -> None:
    broker = AioBroker(down={"q"})
    assert await declare._declare_one(broker, "q", {}) is None  # type: ignore[arg-type]


async def test_the_delay_dead_queue_on_a_node_that_is_down_is_not_bound() -> None:
    broker = AioBroker(down={declare.UNROUTABLE_QUEUE})
    await declare.declare_task_exchange(broker)  # type: ignore[arg-type]
    assert broker.bound == []


async def test_a_queue_that_exists_on_a_node_that_is_down_counts_as_existing() -> None:
    broker = AioBroker(down={"q"})
    assert await declare._exists(broker, "q")  # type: ignore[arg-type]
    assert await declare._probe(broker, "q") == "down"  # type: ignore[arg-type]


# -- the beat's queues ---------------------------------------------------------------------------


class PikaChannel:
    def __init__(self, answers: list[tuple[int, str] | None], declared: list[dict[str, Any]]):
        self.answers, self.declared = answers, declared

    def queue_declare(self, queue: str, durable: bool, arguments: dict[str, Any]) -> None:
        self.declared.append(arguments)
        answer = self.answers.pop(0)
        if answer is not None:
            raise pika.exceptions.ChannelClosedByBroker(*answer)

    def close(self) -> None:
        pass


def beat_link(answers: list[tuple[int, str] | None]) -> tuple[BeatLink, list[dict[str, Any]]]:
    declared: list[dict[str, Any]] = []
    link = BeatLink.__new__(BeatLink)

    class Connection:
        def channel(self) -> PikaChannel:
            return PikaChannel(answers, declared)

    link.connection = Connection()
    return link, declared


def test_the_beat_declares_its_queues_as_quorum_queues() -> None:
    link, declared = beat_link([None])
    link._declare_durable("rabbitq.beat.state", {})
    assert [arguments.get("x-queue-type") for arguments in declared] == ["quorum"]


def test_the_beat_keeps_a_classic_queue_an_earlier_version_declared() -> None:
    link, declared = beat_link([(406, "PRECONDITION_FAILED - inequivalent arg"), None])
    link._declare_durable("rabbitq.beat.state", {"x-max-length": 1})
    assert declared[-1] == {"x-max-length": 1}


def test_the_beat_leaves_its_queue_on_a_node_that_is_down() -> None:
    link, declared = beat_link([(404, DOWN)])
    link._declare_durable("rabbitq.beat.state", {})
    assert len(declared) == 1


def test_a_beat_queue_refused_in_both_forms_is_a_topology_conflict() -> None:
    link, _declared = beat_link([(406, "PRECONDITION_FAILED"), (406, "PRECONDITION_FAILED")])
    with pytest.raises(TopologyConflictError, match=r"rabbitq\.beat\.state"):
        link._declare_durable("rabbitq.beat.state", {})


def test_any_other_refusal_of_a_beat_queue_is_raised() -> None:
    link, _declared = beat_link([(403, "ACCESS_REFUSED")])
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):
        link._declare_durable("rabbitq.beat.state", {})


# -- the revocation log -------------------------------------------------------------------------


class Callbacks:
    def __init__(self) -> None:
        self.discarded: list[Any] = []

    def discard(self, callback: Any) -> None:
        self.discarded.append(callback)


class StreamChannel:
    def __init__(self, refusal: str) -> None:
        self.refusal = refusal
        self.reopen_callbacks = Callbacks()
        self.closed = False

    async def get_queue(self, name: str, ensure: bool = False) -> Any:
        refusal = self.refusal

        class Stream:
            async def consume(self, *args: Any, **kwargs: Any) -> None:
                raise aiormq.exceptions.ChannelPreconditionFailed(refusal)

        return Stream()

    async def close(self) -> None:
        self.closed = True


def follower() -> RevocationFollower:
    return RevocationFollower(None, None, lambda revocation: None)  # type: ignore[arg-type]


async def test_a_node_without_a_replica_of_the_revocation_log_stops_the_follower_not_the_worker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    channel = StreamChannel("PRECONDITION_FAILED - ... does not have a replica on the local node")
    reader = follower()
    assert not await reader._consume_unless_no_replica(channel)  # type: ignore[arg-type]
    assert channel.closed and channel.reopen_callbacks.discarded == [reader._consume_again]
    assert "no replica" in caplog.text


async def test_any_other_refusal_of_the_revocation_log_is_raised() -> None:
    channel = StreamChannel("PRECONDITION_FAILED - inequivalent arg 'x-max-age'")
    with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed):
        await follower()._consume_unless_no_replica(channel)  # type: ignore[arg-type]


# -- LocalCluster's pure parts ------------------------------------------------------------------


def test_a_classic_queue_s_process_names_its_node() -> None:
    assert _node_of_pid("<rabbitq-ab-1@localhost.1796608538.739.0>") == "rabbitq-ab-1@localhost"


def test_each_cluster_node_lists_every_peer_for_classic_peer_discovery() -> None:
    membership = ClusterMembership("n1@localhost", ("n0@localhost", "n1@localhost"), 4369, "C")
    assert membership.config() == [
        "cluster_formation.peer_discovery_backend = classic_config",
        "cluster_formation.classic_config.nodes.1 = n0@localhost",
        "cluster_formation.classic_config.nodes.2 = n1@localhost",
    ]


def test_a_quorum_state_queue_not_running_yet_is_told_apart_from_other_internal_errors() -> None:
    from rabbitq.amqp.beat_link import _queue_starting

    noproc = "INTERNAL_ERROR - Cannot get a message from queue 'rabbitq.beat.state': noproc"
    assert _queue_starting(pika.exceptions.ConnectionClosedByBroker(541, noproc))
    assert not _queue_starting(pika.exceptions.ConnectionClosedByBroker(541, "INTERNAL_ERROR"))
    assert not _queue_starting(pika.exceptions.ConnectionClosedByBroker(320, "noproc"))


async def test_a_task_queue_on_a_node_that_is_down_is_declared_without_binding_it() -> None:
    from rabbitq.topology import Topology

    broker = AioBroker(down={"q"})
    assert await declare.declare_queue(broker, Topology().queue("q")) == []  # type: ignore[arg-type]
    assert "q" not in broker.bound
