"""``rabbitq topology apply FILE`` and ``rabbitq topology show``."""

from __future__ import annotations

import asyncio

import click

from rabbitq.amqp.declare import apply_topology, with_connection
from rabbitq.amqp.management import (
    apply_dead_letter_policies,
    management_client,
    vhost_of,
)
from rabbitq.cli.options import broker_option, management_url_option
from rabbitq.errors import RabbitqError
from rabbitq.routing import load_routing
from rabbitq.topology import TASK_EXCHANGE


@click.group()
def topology() -> None:
    """Declare and inspect exchanges, queues and bindings."""


@topology.command()
@click.argument("routing_file", type=click.Path(dir_okay=False))
@broker_option
@management_url_option
def apply(routing_file: str, broker: str, management_url: str | None) -> None:
    """Declare everything ROUTING_FILE describes (idempotent); put its dead-queue bounds as
    policies (through the management API)."""
    try:
        spec = load_routing(routing_file)
    except RabbitqError as exc:
        raise click.ClickException(str(exc)) from None
    client = management_client(broker, management_url)
    vhost = vhost_of(broker)
    wants_policies = bool(spec.dead_letter_policies())
    if wants_policies:
        try:  # before declaring anything: bounds asked for must not be skipped half-way
            client.policies(vhost)
        except RabbitqError as exc:
            raise click.ClickException(
                f"{routing_file} bounds dead-letter queues, which takes a policy, which takes "
                f"the management API: {exc}\n(give its URL with --management-url or "
                "RABBITQ_MANAGEMENT_URL, e.g. http://user:password@host:15672/)"
            ) from None
    try:
        report = asyncio.run(with_connection(broker, lambda conn: apply_topology(conn, spec)))
    except RabbitqError as exc:
        raise click.ClickException(str(exc)) from None
    for line in report:
        click.echo(f"declared {line}")
    if not (wants_policies or spec.unbounded_dead_queues()):
        return
    try:
        policy_report = apply_dead_letter_policies(client, vhost, spec)
    except RabbitqError as exc:
        if wants_policies:
            raise click.ClickException(str(exc)) from None
        # Nothing to bound; removing rabbitq policies left from an earlier file is best effort.
        click.echo(f"not checked for rabbitq policies to remove: {exc}", err=True)
        return
    for line in policy_report:
        if line.startswith("warning: "):
            click.echo(line, err=True)
        else:
            click.echo(f"applied {line}")


@topology.command()
@broker_option
@management_url_option
@click.option("--all", "show_all", is_flag=True, help="Also show queues not bound to rabbitq.")
def show(broker: str, management_url: str | None, show_all: bool) -> None:
    """Print exchanges, queues (type, depth, consumers) and bindings on the broker."""
    client = management_client(broker, management_url)
    vhost = vhost_of(broker)
    try:
        exchanges = client.exchanges(vhost)
        queues = client.queues(vhost)
        bindings = client.bindings(vhost)
    except RabbitqError as exc:
        raise click.ClickException(
            f"{exc}\n(`topology show` needs the rabbitmq_management plugin; "
            "`rabbitq dev-broker` enables it)"
        ) from None
    bound: dict[str, list[str]] = {}
    for binding in bindings:
        if binding.get("source") == TASK_EXCHANGE and binding.get("destination_type") == "queue":
            bound.setdefault(binding["destination"], []).append(binding["routing_key"])
    click.echo("Exchanges:")
    for exchange in sorted(exchanges, key=lambda e: e["name"]):
        if exchange["name"] and not exchange["name"].startswith("amq."):
            click.echo(
                f"  {exchange['name']:<40} {exchange['type']:<8}"
                f"{' durable' if exchange.get('durable') else ''}"
            )
    click.echo("Queues:")
    click.echo(
        f"  {'name':<40} {'type':<8} {'messages':>9} {'unacked':>8} {'consumers':>9}  bindings"
    )
    rabbitq_names = set(bound) | {q["name"] + ".dead" for q in queues if q["name"] in bound}
    for queue in sorted(queues, key=lambda q: q["name"]):
        name = queue["name"]
        if not show_all and name not in rabbitq_names:
            continue
        click.echo(
            f"  {name:<40} {queue.get('type', 'classic'):<8} "
            f"{queue.get('messages_ready', 0):>9} {queue.get('messages_unacknowledged', 0):>8} "
            f"{queue.get('consumers', 0):>9}  {', '.join(sorted(bound.get(name, [])))}"
        )
