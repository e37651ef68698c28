"""What a broker URL names: RabbitMQ (``amqp://``, ``amqps://``), or the in-memory broker
of this process (``memory://name``, ``testing/stub_broker.py``) that users' tests run on.

One broker URL may name several nodes, tried in turn (Celery's failover):
``"amqp://a//;amqp://b//"``, or ``App(broker=[...])``, kept as that ``;``-joined string so
that every process and command it is handed to sees all of them. ``endpoints`` splits it,
each with the TLS settings its query carries (``tls.py``): the one place a broker URL is
read before a client library is given it (``amqp/connection_parameters.py``).
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

from rabbitq.errors import ConfigurationError, NotSupportedError
from rabbitq.redaction import without_password
from rabbitq.tls import TlsSettings, split_query, tls_from_query, tls_settings, with_query

MEMORY_SCHEME = "memory://"
SEPARATOR = ";"
AMQP_SCHEMES = ("amqp", "amqps")


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """One node: the URL a client library is given (no TLS parameters left in its query)
    and how to secure it (None: plain TCP)."""

    url: str
    tls: TlsSettings | None

    @property
    def shown(self) -> str:
        """The URL fit for logs and errors."""
        return without_password(self.url)

    @property
    def host(self) -> str:
        return urllib.parse.urlsplit(self.url).hostname or "localhost"


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


def split_urls(broker: str | Sequence[str]) -> list[str]:
    """The URLs of a ``;``-joined string or a list, in order, blanks dropped."""
    parts = broker.split(SEPARATOR) if isinstance(broker, str) else list(broker)
    urls = [part.strip() for part in parts if isinstance(part, str) and part.strip()]
    if len(urls) != len(parts) and not isinstance(broker, str):
        raise ConfigurationError(f"broker: every URL must be a non-empty string, got {broker!r}")
    if not urls:
        raise ConfigurationError("broker: no URL given")
    return urls


def broker_url(broker: str | Sequence[str], use_ssl: bool | Mapping[str, Any] | None) -> str:
    """The App's broker URL: its nodes joined by ``;``, each with ``broker_use_ssl`` in its
    query. As Celery does, ``broker_use_ssl`` turns ``amqp://`` into TLS (port 5671 unless
    the URL names one)."""
    urls = split_urls(broker)
    memory = [url for url in urls if is_in_memory(url)]
    if memory and len(urls) > 1:
        raise ConfigurationError(
            f"broker: the in-memory broker ({memory[0]}) cannot be one of several nodes"
        )
    settings = tls_settings(use_ssl)
    if settings is not None:
        if memory:
            raise ConfigurationError("broker_use_ssl: the in-memory broker has no TLS")
        urls = [_with_tls(url, settings) for url in urls]
    for url in urls:
        if not memory:
            endpoint_of(url)  # checked now, not at the first publish
    return SEPARATOR.join(urls)


def endpoints(url: str) -> tuple[Endpoint, ...]:
    """The nodes ``url`` names, in the order to try them."""
    return tuple(endpoint_of(part) for part in split_urls(url))


def endpoint_of(url: str) -> Endpoint:
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in AMQP_SCHEMES:
        raise ConfigurationError(
            f"broker URL {without_password(url)}: expected amqp:// or amqps://"
            + (" (or memory:// alone)" if scheme == "memory" else "")
        )
    plain, tls_query = split_query(url)
    if scheme == "amqp":
        if tls_query:
            raise ConfigurationError(
                f"broker URL {without_password(url)} has TLS settings "
                f"({', '.join(sorted(tls_query))}) but no TLS: use amqps://"
            )
        return Endpoint(plain, None)
    return Endpoint(plain, tls_from_query(tls_query, f"broker URL {without_password(url)}"))


def first_url(url: str) -> str:
    """The first node's URL (the management API is guessed from it)."""
    return split_urls(url)[0]


def _with_tls(url: str, settings: TlsSettings) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() == "amqp":
        parts = parts._replace(scheme="amqps")
    return with_query(urllib.parse.urlunsplit(parts), settings, "broker_use_ssl")
