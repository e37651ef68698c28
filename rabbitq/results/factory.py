"""Choosing a result backend by URL (kept apart so the backends need not know each other)."""

from __future__ import annotations

from rabbitq.errors import ConfigurationError
from rabbitq.results.backend import ResultBackend
from rabbitq.serializers import Serializer


def backend_from_url(url: str, serializer: Serializer, expires: float | None) -> ResultBackend:
    scheme = url.split("://", 1)[0].lower() if "://" in url else url.lower()
    if scheme == "rpc":
        from rabbitq.results.rpc import RpcBackend

        return RpcBackend(url, serializer, expires)
    if scheme in ("redis", "rediss", "unix"):
        from rabbitq.results.redis import RedisBackend

        return RedisBackend(url, serializer, expires)
    if scheme in ("postgresql", "postgres", "db+postgresql", "db+postgres"):
        from rabbitq.results.postgres import PostgresBackend

        return PostgresBackend(url, serializer, expires)
    raise ConfigurationError(
        f"unknown result backend {url!r}: expected 'rpc://', 'redis://host:port/db' "
        "or 'postgresql://user@host:port/db'"
    )
