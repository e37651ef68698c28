"""Testing: with real servers (``LocalBroker`` for RabbitMQ, ``LocalCluster`` for several of
its nodes, ``LocalRedis``, ``LocalPostgres``, and ``Worker``, a real worker in a thread), or
without any
(``StubBroker`` and ``StubWorker``: the in-memory broker running the worker's own pipeline;
``eager``). The pytest plugin (``rabbitq.testing.pytest_plugin``) offers them as fixtures.
See docs/testing.md."""

from rabbitq.testing.eager import eager, make_eager, undo_eager
from rabbitq.testing.local_broker import (
    LocalBroker,
    die_with_parent,
    find_rabbitmq_server,
    free_port,
)
from rabbitq.testing.local_cluster import LocalCluster
from rabbitq.testing.local_postgres import LocalPostgres
from rabbitq.testing.local_redis import LocalRedis
from rabbitq.testing.stub_broker import StubBroker
from rabbitq.testing.stub_worker import StubWorker
from rabbitq.testing.thread_worker import Worker

__all__ = [
    "LocalBroker",
    "LocalCluster",
    "LocalPostgres",
    "LocalRedis",
    "StubBroker",
    "StubWorker",
    "Worker",
    "die_with_parent",
    "eager",
    "find_rabbitmq_server",
    "free_port",
    "make_eager",
    "undo_eager",
]
