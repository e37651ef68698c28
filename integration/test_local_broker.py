"""The throwaway broker used by tests, the demo and `rabbitq dev-broker`."""

from __future__ import annotations

import subprocess

import pika
import pytest

from rabbitq.testing import LocalBroker

# Nodes of its own (3.10): skipped in the RabbitMQ 4.0 pass (conftest.py).
pytestmark = pytest.mark.own_broker


def _beam_processes(node_name: str) -> str:
    result = subprocess.run(["ps", "axww", "-o", "args"], capture_output=True, text=True)
    return "\n".join(line for line in result.stdout.splitlines() if node_name in line)


def test_persistent_message_survives_a_restart_and_stop_leaves_nothing_behind() -> None:
    broker = LocalBroker()
    broker.start()
    try:
        connection = pika.BlockingConnection(pika.URLParameters(broker.url))
        channel = connection.channel()
        channel.queue_declare("kept", durable=True)
        channel.basic_publish("", "kept", b"hello", pika.BasicProperties(delivery_mode=2))
        connection.close()
        broker.restart()
        connection = pika.BlockingConnection(pika.URLParameters(broker.url))
        _method, _properties, body = connection.channel().basic_get("kept", auto_ack=True)
        connection.close()
        assert body == b"hello"
    finally:
        broker.stop()
    assert not broker.running
    assert _beam_processes(broker.node_name) == ""
    assert not broker.base.exists()


def test_dev_broker_tls_prints_an_amqps_url_a_client_connects_to() -> None:
    import os
    import re
    import signal
    import sys
    import time

    from rabbitq.amqp.connection_parameters import open_blocking

    process = subprocess.Popen(
        [sys.executable, "-m", "rabbitq", "dev-broker", "--tls", "--no-management"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        printed = ""
        deadline = time.monotonic() + 120
        while "Ctrl-C" not in printed and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            printed += line
        found = re.search(r"export RABBITQ_BROKER_URL='(amqps://[^']+)'", printed)
        assert found, printed
        connection = open_blocking(found.group(1), "the test")
        assert connection.is_open
        connection.close()
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(60)
