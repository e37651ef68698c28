"""``rabbitq version`` against a real broker: its product and version, from the AMQP
connection's server properties."""

from __future__ import annotations

import re

from click.testing import CliRunner

from rabbitq.cli.version import version


def test_a_reachable_broker_is_shown_by_product_and_version(broker_url: str) -> None:
    result = CliRunner().invoke(version, ["--broker", broker_url])
    assert result.exit_code == 0
    assert re.search(r"^broker RabbitMQ \d+\.\d+\.\d+ \(Erlang/OTP ", result.output, re.M), (
        result.output
    )
