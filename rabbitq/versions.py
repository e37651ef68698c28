"""What a bug report starts with: rabbitq's version, Python's, and the broker's (pure).

rabbitq follows semantic versioning. Its version is written once, in pyproject.toml, and read
back from the installed package's metadata; the broker's is what it announced when a
connection opened (``amqp/server_properties.py`` asks for it). ``rabbitq --version`` and
``rabbitq version`` print them (``cli/version.py``).
"""

from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Mapping
from dataclasses import dataclass

DISTRIBUTION = "rabbitq"
# A checkout put on sys.path without being installed has no metadata to read.
UNKNOWN_VERSION = "0+unknown"


def package_version() -> str:
    """rabbitq's version: pyproject.toml's, as installed (``0+unknown`` when not installed)."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return UNKNOWN_VERSION


def python_description() -> str:
    """``3.11.7 (CPython)``: the running interpreter's version and implementation."""
    return f"{platform.python_version()} ({platform.python_implementation()})"


@dataclass(frozen=True)
class BrokerIdentity:
    """What the broker said it is in ``connection.start``: product and version, its platform
    (``Erlang/OTP 25.2.3``) and its cluster's name (each empty when it sent none)."""

    product: str
    version: str
    platform: str = ""
    cluster_name: str = ""

    @classmethod
    def from_server_properties(cls, properties: Mapping[str, object]) -> BrokerIdentity:
        return cls(
            product=_text(properties.get("product")) or "unknown broker",
            version=_text(properties.get("version")) or "unknown version",
            platform=_text(properties.get("platform")),
            cluster_name=_text(properties.get("cluster_name")),
        )

    def __str__(self) -> str:
        """``RabbitMQ 3.10.8 (Erlang/OTP 25.2.3, cluster rabbit@node1)``."""
        details = [self.platform] if self.platform else []
        if self.cluster_name:
            details.append(f"cluster {self.cluster_name}")
        text = f"{self.product} {self.version}"
        return f"{text} ({', '.join(details)})" if details else text


def _text(value: object) -> str:
    # pika hands the AMQP table's long strings over as bytes.
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)
