"""Connection URLs as they may appear in logs and error messages: without the password."""

from __future__ import annotations


def without_password(url: str) -> str:
    """``amqp://user:secret@host/`` -> ``amqp://user:***@host/``; other URLs unchanged."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
