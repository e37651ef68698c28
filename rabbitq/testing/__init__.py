"""Helpers for testing with real servers: ``LocalBroker`` (RabbitMQ), ``LocalRedis``
and ``LocalPostgres``."""

from rabbitq.testing.local_broker import (
    LocalBroker,
    die_with_parent,
    find_rabbitmq_server,
    free_port,
)
from rabbitq.testing.local_postgres import LocalPostgres
from rabbitq.testing.local_redis import LocalRedis

__all__ = [
    "LocalBroker",
    "LocalPostgres",
    "LocalRedis",
    "die_with_parent",
    "find_rabbitmq_server",
    "free_port",
]
