"""``rabbitq``: the command group. Each subcommand lives in a module of its own."""

from __future__ import annotations

import click

from rabbitq.cli.beat import beat
from rabbitq.cli.call import call
from rabbitq.cli.control import control, inspect
from rabbitq.cli.dashboard import dashboard
from rabbitq.cli.dead import dead
from rabbitq.cli.dev_broker import dev_broker
from rabbitq.cli.events import events
from rabbitq.cli.exporter import exporter
from rabbitq.cli.purge import purge
from rabbitq.cli.result import result
from rabbitq.cli.status import status
from rabbitq.cli.topology import topology
from rabbitq.cli.version import version, version_option
from rabbitq.cli.worker import worker


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@version_option
def cli() -> None:
    """rabbitq: background jobs on RabbitMQ."""


cli.add_command(worker)
cli.add_command(topology)
cli.add_command(dev_broker)
cli.add_command(dead)
cli.add_command(dashboard)
cli.add_command(beat)
cli.add_command(events)
cli.add_command(inspect)
cli.add_command(control)
cli.add_command(status)
cli.add_command(exporter)
cli.add_command(purge)
cli.add_command(call)
cli.add_command(result)
cli.add_command(version)


def main() -> None:
    cli()
