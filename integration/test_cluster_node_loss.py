"""A three-node cluster loses a node and nothing else (docs/cluster.md).

Every queue is a quorum queue (``default_queue_type: quorum``); the publisher, the worker
process and the beat list every node. Under a steady load of confirmed publishes,
countdowns and a chord (``integration/cluster_support.py``), one node is SIGKILLed: the one
the clients are connected to (which also leads the queues), or, separately, one that only
leads the queues. With two nodes of three alive, every confirmed task runs at least once
(a countdown caught between delay levels on RabbitMQ 3.10 once the node is back: see
docs/cluster.md), no countdown starts early, the chord body runs once, and the beat keeps
ticking.

The cluster runs the machine's own rabbitmq-server; the RabbitMQ 4.0 pass would only run the
same nodes again, so it skips this file (``own_broker``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from integration.cluster_support import DrillReport, run_node_loss_drill
from rabbitq.testing import LocalCluster

pytestmark = [pytest.mark.slow, pytest.mark.own_broker]


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(3) as started:
        yield started


@pytest.fixture
def whole_cluster(cluster: LocalCluster) -> Iterator[LocalCluster]:
    """The cluster with all three nodes up before and after each test."""
    for index in range(3):
        if not cluster.nodes[index].running:
            cluster.start(index)
    yield cluster
    for index in range(3):
        if not cluster.nodes[index].running:
            cluster.start(index)


def assert_nothing_lost(report: DrillReport) -> None:
    print(f"\nnode loss: {report.summary()}")  # the figures docs/cluster.md reports
    assert report.confirmed, report.logs
    assert report.missing == [], report.summary()
    assert report.early == [], report.summary()
    assert report.countdowns > 0
    assert report.chord_runs == ["100 4950"], report.summary()
    assert report.beat_stall < 30, f"{report.summary()}\n{report.logs}"


def test_losing_the_node_the_clients_are_connected_to_loses_no_confirmed_task(
    whole_cluster: LocalCluster, tmp_path: Path
) -> None:
    report = run_node_loss_drill(whole_cluster, tmp_path, victim=0, clients_on=0, leaders_on=0)
    assert_nothing_lost(report)


def test_losing_a_node_that_only_leads_the_queues_loses_no_confirmed_task(
    whole_cluster: LocalCluster, tmp_path: Path
) -> None:
    report = run_node_loss_drill(whole_cluster, tmp_path, victim=0, clients_on=1, leaders_on=0)
    assert_nothing_lost(report)
