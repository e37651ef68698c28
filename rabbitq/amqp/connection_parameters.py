"""The one seam between a broker URL and the client libraries: every broker connection rabbitq
opens, pika or aio-pika, gets its parameters here.

A broker URL may name several nodes (``broker_urls.py``: ``"amqps://a;amqps://b"``) and
carries its TLS settings in its query (``tls.py``). Here each node becomes what its client
library takes: ``pika.URLParameters`` with ``ssl_options`` (``pika_parameters``), or a URL,
an ``ssl.SSLContext`` and a server name for aio-pika/aiormq (``aio_targets``, used by
``aio_connection.py``). A node that cannot be reached is described with its password hidden;
a failed TLS handshake is a ``BrokerTlsError`` that says what to check.
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Sequence
from typing import Any

import pika
import pika.exceptions
from pika.adapters.utils.connection_workflow import AMQPConnectorException

from rabbitq.broker_urls import Endpoint, endpoints, refuse_in_memory
from rabbitq.errors import BrokerConnectionError, BrokerTlsError
from rabbitq.redaction import redacted
from rabbitq.tls import describe_tls_failure, ssl_context, tls_failure

PIKA_CONNECTION_ERRORS = (
    pika.exceptions.AMQPError,
    AMQPConnectorException,
    OSError,
)


@dataclasses.dataclass(frozen=True)
class AioTarget:
    """One node as aio-pika takes it."""

    endpoint: Endpoint
    context: ssl.SSLContext | None
    server_hostname: str | None

    @property
    def url(self) -> str:
        return self.endpoint.url


def pika_parameters(url: str, **tuning: Any) -> list[pika.URLParameters]:
    """One ``URLParameters`` per node, in order, each with ``tuning`` set on it
    (``heartbeat=``, ``socket_timeout=``, ...)."""
    found = []
    for endpoint in endpoints(url):
        parameters = pika.URLParameters(endpoint.url)
        if endpoint.tls is not None:
            # server_hostname None: pika checks the certificate against the URL's host.
            parameters.ssl_options = pika.SSLOptions(
                ssl_context(endpoint.tls), endpoint.tls.server_hostname
            )
        for name, value in tuning.items():
            setattr(parameters, name, value)
        found.append(parameters)
    return found


def aio_targets(url: str) -> list[AioTarget]:
    """One target per node, in order. An ``amqps://`` node always gets a context of ours:
    aiormq would otherwise build its own from query parameters we have taken out."""
    targets = []
    for endpoint in endpoints(url):
        if endpoint.tls is None:
            targets.append(AioTarget(endpoint, None, None))
        else:
            context = ssl_context(endpoint.tls)
            targets.append(AioTarget(endpoint, context, endpoint.tls.server_hostname))
    return targets


def open_blocking(url: str, what: str = "", **tuning: Any) -> pika.BlockingConnection:
    """A pika ``BlockingConnection`` to the first node that answers, trying each in turn;
    ``BrokerConnectionError`` (``BrokerTlsError`` when TLS was the trouble) naming each."""
    refuse_in_memory(url, what or "a broker connection")
    failures: list[tuple[Endpoint, BaseException]] = []
    for endpoint, parameters in zip(endpoints(url), pika_parameters(url, **tuning), strict=True):
        try:
            return pika.BlockingConnection(parameters)
        except PIKA_CONNECTION_ERRORS as exc:
            failures.append((endpoint, exc))
    raise connection_failure(failures, what)


def connection_failure(
    failures: Sequence[tuple[Endpoint, BaseException]], what: str = ""
) -> BrokerConnectionError:
    """The error for a connection no node accepted (``what`` wanted it: "the beat"):
    ``BrokerTlsError`` when every node failed its TLS handshake (retrying does not mend a
    certificate)."""
    reasons = "; ".join(describe_failure(endpoint, error) for endpoint, error in failures)
    message = f"cannot connect to the broker{f' for {what}' if what else ''}: {reasons}"
    if failures and all(tls_failure(error) is not None for _, error in failures):
        return BrokerTlsError(message)
    return BrokerConnectionError(message)


def describe_failure(endpoint: Endpoint, error: BaseException) -> str:
    """Why ``endpoint`` could not be reached, in one clause, its password hidden."""
    failure = tls_failure(error)
    if failure is not None:
        return describe_tls_failure(failure, endpoint.shown, endpoint.tls)
    text = str(error) or repr(error)
    return redacted(f"{endpoint.shown}: {type(error).__name__}: {text}")
