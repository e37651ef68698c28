"""A small client for RabbitMQ's management HTTP API, for ``topology show`` and ``apply``.

AMQP cannot list queues or bindings, nor set policies; the management plugin can. Only urllib
is used. ``apply_dead_letter_policies`` puts a routing file's dead-queue bounds on the broker.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from rabbitq.broker_urls import endpoint_of, first_url, is_in_memory
from rabbitq.errors import BrokerConnectionError, ConfigurationError, TopologyConflictError
from rabbitq.redaction import without_password
from rabbitq.tls import ssl_context
from rabbitq.topology import Policy, Topology, exact_pattern, policy_contests, policy_name

DEFAULT_MANAGEMENT_PORT = 15672
DEFAULT_MANAGEMENT_TLS_PORT = 15671


def management_url_for(broker_url: str) -> str:
    """Guess the management URL from the (first node's) AMQP URL: same host and credentials,
    port 15672, or HTTPS on 15671 for an ``amqps://`` broker."""
    parts = urllib.parse.urlsplit(first_url(broker_url))
    user = parts.username or "guest"
    password = parts.password or "guest"
    host = parts.hostname or "localhost"
    if parts.scheme.lower() == "amqps":
        return f"https://{user}:{password}@{host}:{DEFAULT_MANAGEMENT_TLS_PORT}/"
    return f"http://{user}:{password}@{host}:{DEFAULT_MANAGEMENT_PORT}/"


def vhost_of(broker_url: str) -> str:
    path = urllib.parse.urlsplit(first_url(broker_url)).path
    return urllib.parse.unquote(path[1:]) if len(path) > 1 else "/"


def management_client(
    broker_url: str, management_url: str | None = None, *, timeout: float = 5.0
) -> ManagementClient:
    """The management API of ``broker_url``'s broker (at ``management_url``, or guessed).

    For an ``amqps://`` broker the API is spoken over HTTPS only, trusting what the broker's
    TLS settings trust (``ca_certs``): its credentials must not cross the network in clear
    when the broker's own traffic does not."""
    url = management_url or management_url_for(broker_url)
    broker = endpoint_of(first_url(broker_url)) if not is_in_memory(broker_url) else None
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if broker is not None and broker.tls is not None and scheme != "https":
        raise ConfigurationError(
            f"management URL {without_password(url)} is plain HTTP but the broker is reached "
            "over TLS (amqps://): give an https:// management URL (its credentials would "
            "otherwise cross the network in clear)"
        )
    tls = broker.tls if broker is not None and broker.tls is not None else None
    context = ssl_context(tls) if scheme == "https" and tls is not None else None
    return ManagementClient(url, timeout=timeout, context=context)


class ManagementClient:
    def __init__(
        self, url: str, *, timeout: float = 5.0, context: ssl.SSLContext | None = None
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme.lower() not in ("http", "https"):
            raise ConfigurationError(
                f"management URL {without_password(url)}: expected http:// or https://"
            )
        default_port = (
            DEFAULT_MANAGEMENT_TLS_PORT if parts.scheme == "https" else DEFAULT_MANAGEMENT_PORT
        )
        self._base = f"{parts.scheme}://{parts.hostname}:{parts.port or default_port}"
        # None for https: the system's CAs (urllib's default).
        self._context = context
        # A URL's credentials are percent-encoded (a password with '@' or '%'); Basic auth
        # wants them as they are.
        user = urllib.parse.unquote(parts.username or "guest")
        password = urllib.parse.unquote(parts.password or "guest")
        credentials = f"{user}:{password}"
        self._auth = "Basic " + base64.b64encode(credentials.encode()).decode("ascii")
        self._timeout = timeout

    @property
    def base(self) -> str:
        return self._base  # without credentials: fit for messages

    def get(self, path: str) -> Any:
        return self.call("GET", path)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """One request; the JSON answer (None when empty). Refusals and silence raise
        ``BrokerConnectionError`` naming the method and path."""
        headers = {"Authorization": self._auth}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self._base + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(
                request, timeout=self._timeout, context=self._context
            ) as response:
                answer = response.read()
                return json.loads(answer) if answer else None
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:300]
            raise BrokerConnectionError(
                f"management API at {self._base} refused {method} {path}: {exc.code} {detail}"
            ) from None
        except (urllib.error.URLError, OSError, json.JSONDecodeError) as exc:
            raise BrokerConnectionError(
                f"management API at {self._base} did not answer {path}: {exc}"
            ) from exc

    def exchanges(self, vhost: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get(f"/api/exchanges/{_quote(vhost)}")
        return result

    def queues(self, vhost: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get(f"/api/queues/{_quote(vhost)}")
        return result

    def bindings(self, vhost: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get(f"/api/bindings/{_quote(vhost)}")
        return result

    def queue(self, vhost: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.get(f"/api/queues/{_quote(vhost)}/{_quote(name)}")
        return result

    def policies(self, vhost: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get(f"/api/policies/{_quote(vhost)}")
        return result

    def put_policy(self, vhost: str, policy: Policy) -> None:
        self.call("PUT", f"/api/policies/{_quote(vhost)}/{_quote(policy.name)}", policy.body())

    def delete_policy(self, vhost: str, name: str) -> None:
        self.call("DELETE", f"/api/policies/{_quote(vhost)}/{_quote(name)}")


def apply_dead_letter_policies(
    client: ManagementClient, vhost: str, topology: Topology
) -> list[str]:
    """Put the topology's dead-queue policies, remove rabbitq's from queues no longer bounded.

    Returns one line per thing done, and a line starting ``warning:`` for each operator policy
    that outranks rabbitq's or that rabbitq's displaces (RabbitMQ applies one policy per queue).
    """
    existing = {p["name"]: p for p in client.policies(vhost)}
    report: list[str] = []
    for spec in topology.queues:
        policy = spec.dead_letter_policy(topology.policy_priority)
        if policy is None:
            continue
        queue = spec.dead_letter_queue
        current = existing.get(policy.name)
        if current is not None and current.get("pattern") != policy.pattern:
            raise TopologyConflictError(
                f"policy {policy.name!r} exists with pattern {current.get('pattern')!r}, not "
                f"{policy.pattern!r}: it is not rabbitq's, so it is left alone. Rename it, "
                "then apply again."
            )
        client.put_policy(vhost, policy)
        report.append(f"policy {policy.name} on {queue}: {_describe(policy.definition)}")
        report += policy_contests(policy, spec.type, existing.values())
    for queue in topology.unbounded_dead_queues():
        current = existing.get(policy_name(queue))
        # Only a policy rabbitq made (its name and exact pattern) is ever removed.
        if current is not None and current.get("pattern") == exact_pattern(queue):
            client.delete_policy(vhost, policy_name(queue))
            report.append(f"policy {policy_name(queue)} removed: {queue} keeps its dead letters")
    return report


def _describe(definition: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in sorted(definition.items()))


def _quote(vhost: str) -> str:
    return urllib.parse.quote(vhost, safe="")
