"""``rabbitq dev-broker``: a throwaway local RabbitMQ for development, no Docker needed."""

from __future__ import annotations

import signal
import threading

import click

from rabbitq.errors import RabbitqError
from rabbitq.testing import LocalBroker


@click.command("dev-broker")
@click.option(
    "--management/--no-management",
    default=True,
    show_default=True,
    help="Enable the management UI and HTTP API (needed by `topology show`).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Keep the node's data here (kept after exit) instead of a temp dir.",
)
def dev_broker(management: bool, data_dir: str | None) -> None:
    """Run a private RabbitMQ node on free ports until Ctrl-C."""
    broker = LocalBroker(management=management, data_dir=data_dir)
    click.echo("starting RabbitMQ...")
    try:
        broker.start()
    except RabbitqError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"AMQP:        {broker.url}")
    if broker.management_url:
        click.echo(f"management:  {broker.management_url}")
    click.echo(f"\n  export RABBITQ_BROKER_URL={broker.url}")
    if broker.management_url:
        click.echo(f"  export RABBITQ_MANAGEMENT_URL={broker.management_url}")
    click.echo("\nCtrl-C to stop.")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(0.5) and broker.running:
        pass
    click.echo("stopping RabbitMQ...")
    broker.stop()
