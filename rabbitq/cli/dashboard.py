"""``rabbitq dashboard``: the web dashboard (``rabbitq/dashboard/``), served by uvicorn.

Starlette, Jinja2 and uvicorn come with the ``rabbitq[dashboard]`` extra; they are imported
only once the command runs, so every other command works without them.
"""

from __future__ import annotations

import click

from rabbitq.cli.options import broker_option, management_url_option
from rabbitq.dashboard.config import TOKEN_ENV, DashboardConfig, bind_refusal
from rabbitq.errors import MissingExtraError


@click.command()
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--bind",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; one that is not loopback needs a token.",
)
@broker_option
@management_url_option
@click.option("--flower", "flower_url", default=None, help="Flower's URL, to link to its pages.")
@click.option(
    "--token",
    envvar=TOKEN_ENV,
    default=None,
    help=f"Every request must carry it (login form or Bearer) [env: {TOKEN_ENV}].",
)
@click.option("--beat-group", default="", help="The beat group to show (rabbitq beat --group).")
@click.option(
    "-l",
    "--loglevel",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
def dashboard(
    port: int,
    bind: str,
    broker: str,
    management_url: str | None,
    flower_url: str | None,
    token: str | None,
    beat_group: str,
    loglevel: str,
) -> None:
    """Serve the dashboard: status live, dead letters listed, shown, replayed, purged."""
    token = token or None
    refusal = bind_refusal(bind, token)
    if refusal:
        raise click.UsageError(refusal)
    try:
        from rabbitq.dashboard.app import create_app
    except MissingExtraError as exc:
        raise click.ClickException(str(exc)) from None
    import uvicorn

    from rabbitq.amqp.status_collector import StatusCollector

    config = DashboardConfig(broker, management_url, flower_url, token, bind)
    collector = StatusCollector(broker, management_url, beat_group=beat_group)
    app = create_app(config, collector)
    click.echo(f"rabbitq dashboard: http://{_host_for_url(bind)}:{port}/", err=True)
    uvicorn.run(app, host=bind, port=port, log_level=loglevel.lower(), access_log=False)


def _host_for_url(bind: str) -> str:
    return f"[{bind}]" if ":" in bind else bind
