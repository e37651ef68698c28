"""What a broker URL names: RabbitMQ (``amqp://``, ``amqps://``), or the in-memory broker
of this process (``memory://name``, ``testing/stub_broker.py``) that users' tests run on."""

from __future__ import annotations

MEMORY_SCHEME = "memory://"


def is_in_memory(url: str) -> bool:
    return url.startswith(MEMORY_SCHEME)
