"""What every blocking (pika) reader of the broker needs: the errors that mean "the broker
cannot be read", and connection parameters that give up quickly.

pika raises ``AMQPConnectorException`` subclasses (a broker that accepts TCP and never
finishes the AMQP handshake: ``AMQPConnectorStackTimeout``) outside its ``AMQPError`` tree.
"""

from __future__ import annotations

import pika

from rabbitq.amqp.connection_parameters import (
    PIKA_CONNECTION_ERRORS,
    open_blocking,
    pika_parameters,
)
from rabbitq.broker_urls import refuse_in_memory

CONNECTION_ERRORS = PIKA_CONNECTION_ERRORS

# Seconds: a status reader must answer "cannot read" soon, not after pika's 15 s handshake.
QUICK_SOCKET_TIMEOUT = 5.0
QUICK_STACK_TIMEOUT = 8.0
QUICK = {
    "socket_timeout": QUICK_SOCKET_TIMEOUT,
    "stack_timeout": QUICK_STACK_TIMEOUT,
    "blocked_connection_timeout": QUICK_STACK_TIMEOUT,
}


def quick_parameters(url: str) -> list[pika.URLParameters]:
    """``url``'s parameters, one per node (``pika.BlockingConnection`` tries them in turn),
    with timeouts fit for a reader that must answer within seconds."""
    refuse_in_memory(url, "reading the broker's status")
    return pika_parameters(url, **QUICK)


def open_quickly(url: str, what: str = "reading the broker's status") -> pika.BlockingConnection:
    """A connection for a reader that must answer within seconds (``BrokerConnectionError``,
    ``BrokerTlsError``, naming each node, otherwise)."""
    return open_blocking(url, what, **QUICK)
