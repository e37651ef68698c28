"""What a broker URL names: RabbitMQ (``amqp://``, ``amqps://``), or the in-memory broker
of this process (``memory://name``, ``testing/stub_broker.py``) that users' tests run on."""

from __future__ import annotations

from rabbitq.errors import NotSupportedError

MEMORY_SCHEME = "memory://"


def is_in_memory(url: str) -> bool:
    return url.startswith(MEMORY_SCHEME)


def refuse_in_memory(url: str, what: str) -> None:
    """``what`` opens a connection to RabbitMQ: on ``memory://`` say so instead of letting
    pika fail on the scheme."""
    if is_in_memory(url):
        raise NotSupportedError(
            f"{what} needs RabbitMQ; the in-memory broker ({url}) does not model it "
            "(docs/testing.md says what it does): test it with rabbitq.testing.Worker on a "
            "real broker"
        )
