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
@click.option(
    "--tls",
    is_flag=True,
    help="Also listen for amqps:// (and HTTPS management) with certificates of a throwaway "
    "CA (needs trustme); the URLs printed are the TLS ones.",
)
def dev_broker(management: bool, data_dir: str | None, tls: bool) -> None:
    """Run a private RabbitMQ node on free ports until Ctrl-C."""
    broker = LocalBroker(management=management, data_dir=data_dir, tls=tls)
    click.echo("starting RabbitMQ...")
    try:
        broker.start()
    except RabbitqError as exc:
        raise click.ClickException(str(exc)) from None
    url = broker.tls_url if tls else broker.url
    management_url = broker.tls_management_url if tls else broker.management_url
    click.echo(f"AMQP:        {broker.url}")
    if tls:
        click.echo(f"AMQPS:       {broker.tls_url}")
        files = broker.certificates
        click.echo(f"CA:          {files.ca}")
        click.echo(f"client cert: {files.client_cert} (key {files.client_key})")
    if broker.management_url:
        click.echo(f"management:  {management_url}")
    click.echo(f"\n  export RABBITQ_BROKER_URL='{url}'")
    if management_url:
        click.echo(f"  export RABBITQ_MANAGEMENT_URL={management_url}")
    click.echo("\nCtrl-C to stop.")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(0.5) and broker.running:
        pass
    click.echo("stopping RabbitMQ...")
    broker.stop()
