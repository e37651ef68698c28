"""The broker's server properties (product, version, platform, cluster name), as it sends
them in ``connection.start``: one connection opened, read, closed.

Bounded: each node gets ``timeout`` seconds (pika's socket and whole-stack timeouts), and the
call as a whole a deadline of its own, because pika's timeouts do not cover resolving the
host name. ``rabbitq --version`` waits no longer than that for a broker that is not there.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import pika.exceptions

from rabbitq.amqp.connection_parameters import open_blocking
from rabbitq.broker_urls import endpoints
from rabbitq.errors import BrokerConnectionError
from rabbitq.redaction import without_password

# Beyond the nodes' own timeouts: closing the connection, starting the thread.
DEADLINE_SLACK = 1.0


def read_server_properties(url: str, timeout: float) -> dict[str, Any]:
    """The server properties of the first node of ``url`` that answers; raises
    ``BrokerConnectionError`` (password hidden) when none does in time."""
    deadline = timeout * len(endpoints(url)) + DEADLINE_SLACK
    outcome: list[dict[str, Any] | BaseException] = []
    # A daemon thread: a name lookup that never returns is left behind, not waited for.
    thread = threading.Thread(
        target=_read_into, args=(url, timeout, outcome), name="rabbitq-server-properties"
    )
    thread.daemon = True
    thread.start()
    thread.join(deadline)
    if not outcome:
        raise BrokerConnectionError(f"no answer from {without_password(url)} within {deadline:g} s")
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result


def _read_into(url: str, timeout: float, outcome: list[dict[str, Any] | BaseException]) -> None:
    try:
        connection = open_blocking(
            url,
            socket_timeout=timeout,
            stack_timeout=timeout,
            connection_attempts=1,
            blocked_connection_timeout=timeout,
        )
    except BaseException as exc:  # handed to the caller's thread, raised there
        outcome.append(exc)
        return
    try:
        outcome.append(dict(connection._impl.server_properties))
    finally:
        with contextlib.suppress(pika.exceptions.AMQPError, OSError):
            connection.close()
