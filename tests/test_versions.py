"""rabbitq's version comes from the installed package (pyproject.toml's); the broker's from
what it announced when the connection opened."""

from __future__ import annotations

import importlib.metadata
import platform
import re

import rabbitq
from rabbitq.versions import BrokerIdentity, python_description

# semver.org's core: MAJOR.MINOR.PATCH, an optional -prerelease and +build.
SEMVER = re.compile(r"^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")


def test_the_version_is_the_installed_package_s() -> None:
    assert rabbitq.__version__ == importlib.metadata.version("rabbitq")


def test_the_version_is_a_semantic_version() -> None:
    assert SEMVER.match(rabbitq.__version__)


def test_python_is_described_by_version_and_implementation() -> None:
    assert python_description() == (
        f"{platform.python_version()} ({platform.python_implementation()})"
    )


def test_the_broker_is_read_from_pika_s_server_properties() -> None:
    identity = BrokerIdentity.from_server_properties(
        {
            "product": b"RabbitMQ",
            "version": b"4.0.5",
            "platform": b"Erlang/OTP 27.2",
            "cluster_name": b"rabbit@node1",
            "capabilities": {"publisher_confirms": True},
        }
    )
    assert str(identity) == "RabbitMQ 4.0.5 (Erlang/OTP 27.2, cluster rabbit@node1)"


def test_a_broker_that_sends_only_product_and_version_is_shown_by_those() -> None:
    identity = BrokerIdentity.from_server_properties({"product": "RabbitMQ", "version": "3.10.8"})
    assert str(identity) == "RabbitMQ 3.10.8"


def test_a_broker_that_sends_nothing_is_an_unknown_one() -> None:
    assert str(BrokerIdentity.from_server_properties({})) == "unknown broker unknown version"
