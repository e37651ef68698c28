"""``rabbitq version`` and the ``--version`` option: rabbitq's and Python's versions always,
the broker's when one answers in time, exit code 0 either way."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

import rabbitq
from rabbitq.cli.version import version, version_option
from rabbitq.versions import python_description


@pytest.fixture
def closed_port_url() -> str:
    """A broker URL nothing listens on (the password is a secret to keep out of the output)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"amqp://guest:s3cret@127.0.0.1:{port}/"


@pytest.fixture
def silent_broker_url() -> Iterator[str]:
    """A server that accepts the connection and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"amqp://guest:guest@127.0.0.1:{server.getsockname()[1]}/"
    server.close()
    for connection in accepted:
        connection.close()


@click.group()
@version_option
def group() -> None:
    """Stands in for ``rabbitq``'s own group, which hooks the option the same way."""


def test_without_a_broker_it_prints_both_versions_says_so_and_exits_0(
    closed_port_url: str,
) -> None:
    result = CliRunner().invoke(version, ["--broker", closed_port_url])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[:2] == [f"rabbitq {rabbitq.__version__}", f"Python {python_description()}"]
    assert lines[2].startswith("broker not reachable: ")


def test_the_broker_s_password_is_never_printed(closed_port_url: str) -> None:
    result = CliRunner().invoke(version, ["--broker", closed_port_url])
    assert "s3cret" not in result.output and "guest:***@" in result.output


def test_a_broker_that_never_answers_is_given_up_after_the_timeout(
    silent_broker_url: str,
) -> None:
    started = time.monotonic()
    result = CliRunner().invoke(version, ["--broker", silent_broker_url, "--timeout", "0.5"])
    assert result.exit_code == 0
    assert "broker not reachable" in result.output
    assert time.monotonic() - started < 5


def test_the_version_option_asks_the_broker_of_the_environment(closed_port_url: str) -> None:
    result = CliRunner().invoke(group, ["--version"], env={"RABBITQ_BROKER_URL": closed_port_url})
    assert result.exit_code == 0
    assert result.output.splitlines()[0] == f"rabbitq {rabbitq.__version__}"
    assert closed_port_url.replace("s3cret", "***") in result.output


def test_an_in_memory_broker_is_not_asked() -> None:
    result = CliRunner().invoke(version, ["--broker", "memory://"])
    assert result.output.splitlines()[2] == "broker in memory (memory://): no server to ask"


def test_a_url_pika_cannot_read_is_reported_not_raised() -> None:
    result = CliRunner().invoke(version, ["--broker", "amqp://guest:guest@localhost:port/"])
    assert result.exit_code == 0
    assert "broker not reachable: amqp://guest:***@localhost:port/: " in result.output
