"""What every blocking (pika) reader of the broker needs: the errors that mean "the broker
cannot be read", and connection parameters that give up quickly.

pika raises ``AMQPConnectorException`` subclasses (a broker that accepts TCP and never
finishes the AMQP handshake: ``AMQPConnectorStackTimeout``) outside its ``AMQPError`` tree.
"""

from __future__ import annotations

import pika
import pika.exceptions
from pika.adapters.utils.connection_workflow import AMQPConnectorException

from rabbitq.broker_urls import refuse_in_memory

CONNECTION_ERRORS = (
    pika.exceptions.AMQPError,
    AMQPConnectorException,
    OSError,
)

# Seconds: a status reader must answer "cannot read" soon, not after pika's 15 s handshake.
QUICK_SOCKET_TIMEOUT = 5.0
QUICK_STACK_TIMEOUT = 8.0


def quick_parameters(url: str) -> pika.URLParameters:
    """``url``'s parameters, with timeouts fit for a reader that must answer within seconds."""
    refuse_in_memory(url, "reading the broker's status")
    parameters = pika.URLParameters(url)
    parameters.socket_timeout = QUICK_SOCKET_TIMEOUT
    parameters.stack_timeout = QUICK_STACK_TIMEOUT
    parameters.blocked_connection_timeout = QUICK_STACK_TIMEOUT
    return parameters
