"""A small client for RabbitMQ's management HTTP API (read-only), for ``topology show``.

AMQP cannot list queues or bindings; the management plugin can. Only urllib is used.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from rabbitq.errors import BrokerConnectionError

DEFAULT_MANAGEMENT_PORT = 15672


def management_url_for(broker_url: str) -> str:
    """Guess the management URL from the AMQP URL: same host and credentials, port 15672."""
    parts = urllib.parse.urlsplit(broker_url)
    user = parts.username or "guest"
    password = parts.password or "guest"
    host = parts.hostname or "localhost"
    return f"http://{user}:{password}@{host}:{DEFAULT_MANAGEMENT_PORT}/"


def vhost_of(broker_url: str) -> str:
    path = urllib.parse.urlsplit(broker_url).path
    return urllib.parse.unquote(path[1:]) if len(path) > 1 else "/"


class ManagementClient:
    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        parts = urllib.parse.urlsplit(url)
        self._base = f"{parts.scheme}://{parts.hostname}:{parts.port or DEFAULT_MANAGEMENT_PORT}"
        credentials = f"{parts.username or 'guest'}:{parts.password or 'guest'}"
        self._auth = "Basic " + base64.b64encode(credentials.encode()).decode("ascii")
        self._timeout = timeout

    def get(self, path: str) -> Any:
        request = urllib.request.Request(self._base + path, headers={"Authorization": self._auth})
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                return json.loads(response.read())
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


def _quote(vhost: str) -> str:
    return urllib.parse.quote(vhost, safe="")
