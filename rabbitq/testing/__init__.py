"""Helpers for testing with real servers: ``LocalBroker`` (RabbitMQ) and ``LocalRedis``."""

from rabbitq.testing.local_broker import (
    LocalBroker,
    die_with_parent,
    find_rabbitmq_server,
    free_port,
)
from rabbitq.testing.local_redis import LocalRedis

__all__ = ["LocalBroker", "LocalRedis", "die_with_parent", "find_rabbitmq_server", "free_port"]
