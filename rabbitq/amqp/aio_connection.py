"""aio-pika connections to a broker of one or several nodes, over TCP or TLS.

``FailoverConnection`` is aio-pika's robust connection that, each time it (re)connects, tries
the nodes in turn, starting with the one after the node it last used: a worker or asyncio
publisher whose node dies moves to the next at once, and its robust channels (their qos,
exchanges, consumers) are restored there. aio-pika has no hook for "which URL next", so the
one step that makes a transport is overridden (``_RobustConnection__connect_transport``);
``tests/test_connection_parameters.py`` fails should an upgrade rename it.

``connect_once`` opens a plain connection for one job (a declaration, reading events),
trying each node once. Both take their parameters from ``connection_parameters.py``.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import aio_pika
import aiormq.exceptions
from aio_pika.abc import AbstractConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from pamqp.common import FieldTable
from yarl import URL

from rabbitq.amqp.connection_parameters import AioTarget, aio_targets, connection_failure
from rabbitq.broker_urls import Endpoint, refuse_in_memory
from rabbitq.errors import ConfigurationError

log = logging.getLogger("rabbitq.connection")

# Seconds for one node's TCP, TLS and AMQP handshake: a node that is down but does not
# refuse (a dead host) must not keep the others from being tried.
ATTEMPT_TIMEOUT = 10.0
_TRANSPORT_STEP = "_RobustConnection__connect_transport"
_AIO_ERRORS = (OSError, aiormq.exceptions.AMQPError, TimeoutError)


def _point(connection: aio_pika.Connection, target: AioTarget) -> None:
    """Point ``connection`` at ``target``: its next transport goes there."""
    connection.url = URL(target.url)
    connection.kwargs["context"] = target.context
    if target.server_hostname is not None:
        # Passed down to asyncio.open_connection (aiormq's TLS transport).
        connection.kwargs["server_hostname"] = target.server_hostname
    else:
        connection.kwargs.pop("server_hostname", None)


class FailoverConnection(aio_pika.RobustConnection):
    """A robust connection over several nodes, each (re)connect trying them in turn."""

    def __init__(self, targets: list[AioTarget], **kwargs: Any) -> None:
        if not targets:
            raise ConfigurationError("a broker connection needs at least one URL")
        if len(targets) > 1 and not hasattr(aio_pika.RobustConnection, _TRANSPORT_STEP):
            raise ConfigurationError(
                "this aio-pika cannot fail over between broker URLs (its RobustConnection "
                f"has no {_TRANSPORT_STEP}): pin aio-pika 9.4-10.x or give one URL"
            )
        super().__init__(URL(targets[0].url), **kwargs)
        self.targets = targets
        self._next = 0  # the node the next (re)connect tries first
        self.target = targets[0]  # the node in use, or last tried
        # Why each node refused the last (re)connect: for the error when none answered.
        self.failures: list[tuple[Endpoint, BaseException]] = []
        _point(self, self.target)

    async def connect(self, timeout: Any = None) -> None:
        await super().connect(ATTEMPT_TIMEOUT if timeout is None else timeout)

    async def _RobustConnection__connect_transport(self) -> None:  # aio-pika names it
        """One (re)connection: each node in turn from the next one; the last error if none
        answers (aio-pika then waits its reconnect_interval and calls this again)."""
        step = getattr(aio_pika.RobustConnection, _TRANSPORT_STEP)
        failures: list[tuple[Endpoint, BaseException]] = []
        count = len(self.targets)
        for offset in range(count):
            index = (self._next + offset) % count
            self.target = target = self.targets[index]
            _point(self, target)
            try:
                await step(self)
            except CONNECTION_EXCEPTIONS as exc:
                failures.append((target.endpoint, exc))
                if count > 1:
                    log.warning("%s", connection_failure([(target.endpoint, exc)]))
                continue
            # The next loss moves on: the node that just failed us is the likeliest dead.
            self._next = (index + 1) % count
            if failures:
                log.warning("connected to %s instead", target.endpoint.shown)
            self.failures = []
            return
        self.failures = failures
        raise failures[-1][1]


def robust_connection(url: str, *, name: str, what: str = "") -> FailoverConnection:
    """A robust connection to ``url``'s nodes, not yet connected (``await c.connect()``)."""
    refuse_in_memory(url, what or "a broker connection")
    return FailoverConnection(aio_targets(url), client_properties={"connection_name": name})


async def connect_robust(url: str, *, name: str, what: str = "") -> FailoverConnection:
    """``robust_connection``, connected: ``BrokerConnectionError`` when no node answers."""
    connection = robust_connection(url, name=name, what=what)
    try:
        await connection.connect()
    except BaseException as exc:
        # Closed whatever happened: a robust connection cancelled mid-handshake would
        # otherwise keep reconnecting on its own, and the loop would never finish.
        with contextlib.suppress(Exception):
            await connection.close()
        if isinstance(exc, CONNECTION_EXCEPTIONS):
            failures = connection.failures or [(connection.target.endpoint, exc)]
            raise connection_failure(failures, what) from exc
        raise
    return connection


async def connect_once(url: str, *, what: str = "", name: str | None = None) -> AbstractConnection:
    """A plain connection to the first of ``url``'s nodes that answers."""
    refuse_in_memory(url, what or "a broker connection")
    failures: list[tuple[Endpoint, BaseException]] = []
    properties: FieldTable | None = {"connection_name": name} if name else None
    for target in aio_targets(url):
        connection = aio_pika.Connection(URL(target.url), client_properties=properties)
        _point(connection, target)
        try:
            await connection.connect(ATTEMPT_TIMEOUT)
        except _AIO_ERRORS as exc:
            with contextlib.suppress(Exception):
                await connection.close()
            failures.append((target.endpoint, exc))
            continue
        return connection
    raise connection_failure(failures, what)
