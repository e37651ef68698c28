"""Helpers for testing with a real broker: ``LocalBroker`` runs a throwaway RabbitMQ node."""

from rabbitq.testing.local_broker import (
    LocalBroker,
    die_with_parent,
    find_rabbitmq_server,
    free_port,
)

__all__ = ["LocalBroker", "die_with_parent", "find_rabbitmq_server", "free_port"]
