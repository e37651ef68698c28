"""``rabbitq --version`` and ``rabbitq version``: rabbitq's version, Python's, and the
broker's when one answers.

    rabbitq 0.1.0
    Python 3.11.7 (CPython)
    broker RabbitMQ 3.10.8 (Erlang/OTP 25.2.3, cluster rabbit@host) at amqp://guest:***@localhost:5672/

A broker that does not answer within the timeout is reported on the third line, and the
command still exits 0: the versions are wanted most when something is wrong.
``--version`` takes its broker from $RABBITQ_BROKER_URL (else the default URL); ``rabbitq
version --broker URL`` names one.
"""

from __future__ import annotations

import os

import click

from rabbitq.app import DEFAULT_BROKER_URL
from rabbitq.broker_urls import is_in_memory
from rabbitq.cli.options import broker_option
from rabbitq.errors import RabbitqError
from rabbitq.redaction import redacted, without_password
from rabbitq.versions import BrokerIdentity, package_version, python_description

BROKER_TIMEOUT = 2.0


def version_lines(broker: str, timeout: float = BROKER_TIMEOUT) -> list[str]:
    """The lines both spellings print; the broker's is asked for at most ``timeout`` s a node."""
    return [
        f"rabbitq {package_version()}",
        f"Python {python_description()}",
        f"broker {broker_line(broker, timeout)}",
    ]


def broker_line(broker: str, timeout: float) -> str:
    shown = without_password(broker)
    if is_in_memory(broker):
        return f"in memory ({shown}): no server to ask"
    # Imported here: the AMQP client loads only when a broker is asked.
    from rabbitq.amqp.server_properties import read_server_properties

    try:
        properties = read_server_properties(broker, timeout)
    except RabbitqError as exc:  # says which node failed and why, password hidden
        return f"not reachable: {exc}"
    except ValueError as exc:  # a URL pika cannot parse
        return f"not reachable: {shown}: {redacted(str(exc))}"
    return f"{BrokerIdentity.from_server_properties(properties)} at {shown}"


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    broker = os.environ.get("RABBITQ_BROKER_URL") or DEFAULT_BROKER_URL
    for line in version_lines(broker):
        click.echo(line)
    ctx.exit()


version_option = click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show rabbitq's, Python's and the broker's versions ($RABBITQ_BROKER_URL) and exit.",
)


@click.command()
@broker_option
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=BROKER_TIMEOUT,
    show_default=True,
    help="Seconds to wait for each broker node.",
)
def version(broker: str, timeout: float) -> None:
    """Print rabbitq's, Python's and the broker's versions (exits 0 without a broker)."""
    for line in version_lines(broker, timeout):
        click.echo(line)
