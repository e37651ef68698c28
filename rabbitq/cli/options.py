"""Options shared by several commands."""

from __future__ import annotations

import sys

import click
from click.core import ParameterSource

from rabbitq.app import DEFAULT_BROKER_URL, App
from rabbitq.app_path import load_app
from rabbitq.errors import RabbitqError

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

app_option = click.option(
    "-A",
    "--app",
    "app_path",
    default=None,
    metavar="MODULE[:ATTR]",
    help="Module holding the rabbitq.App: its broker, routing and result backend "
    "[default: an App from --broker and the RABBITQ_* variables].",
)


def app_from_options(app_path: str | None, broker: str | None = None) -> App:
    """The App ``-A`` names (``--broker`` typed on the command line wins over its broker, as
    Celery's ``-b`` does), else a plain App on ``--broker`` (None: $RABBITQ_BROKER_URL)."""
    if app_path is None:
        try:
            return App(broker=broker)
        except RabbitqError as exc:
            raise click.ClickException(str(exc)) from None
    if "" not in sys.path:
        sys.path.insert(0, "")  # like `python -m`: the app module is found from the cwd
    try:
        app = load_app(app_path)
    except RabbitqError as exc:
        raise click.ClickException(str(exc)) from None
    context = click.get_current_context(silent=True)
    typed = (
        context is not None
        and context.get_parameter_source("broker") is ParameterSource.COMMANDLINE
    )
    if broker is not None and typed:
        app.use_broker(broker)
    return app
