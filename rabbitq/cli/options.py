"""Options shared by several commands."""

from __future__ import annotations

import click

from rabbitq.app import DEFAULT_BROKER_URL

broker_option = click.option(
    "--broker",
    envvar="RABBITQ_BROKER_URL",
    default=DEFAULT_BROKER_URL,
    show_default=True,
    help="AMQP URL [env: RABBITQ_BROKER_URL].",
)

management_url_option = click.option(
    "--management-url",
    envvar="RABBITQ_MANAGEMENT_URL",
    default=None,
    help="Management API URL [env: RABBITQ_MANAGEMENT_URL; default: same host as --broker, "
    "port 15672].",
)

routing_option = click.option(
    "--routing",
    type=click.Path(dir_okay=False),
    envvar="RABBITQ_ROUTING",
    help="Routing YAML file [env: RABBITQ_ROUTING].",
)

loglevel_option = click.option(
    "-l",
    "--loglevel",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
