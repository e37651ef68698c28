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
