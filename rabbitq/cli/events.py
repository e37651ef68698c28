"""``rabbitq events``: print events from the history stream, or live ones."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from typing import Any

import click

from rabbitq.amqp.event_stream import read_events
from rabbitq.cli.options import broker_option
from rabbitq.errors import RabbitqError
from rabbitq.events.history import EventFilter, format_event, parse_since


@click.command()
@broker_option
@click.option(
    "--since",
    metavar="WHEN",
    default=None,
    help="From this long ago (90s, 30m, 1h, 2d, 1w) or this ISO 8601 time [default: the "
    "whole history].",
)
@click.option(
    "--task", "task", metavar="NAME", default=None, help="Only tasks of this name (a glob)."
)
@click.option("--id", "task_id", metavar="ID", default=None, help="Only the task with this id.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events (Ctrl-C stops).")
@click.option("--heartbeats", is_flag=True, help="Show worker-heartbeat events (live only).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event.")
def events(
    broker: str,
    since: str | None,
    task: str | None,
    task_id: str | None,
    follow: bool,
    heartbeats: bool,
    as_json: bool,
) -> None:
    """Print task and worker events: what the history stream rabbitq.events kept (the routing
    file's events.history), then new ones with --follow; without a history, --follow prints
    live events."""
    try:
        start = parse_since(since, dt.datetime.now(dt.UTC)) if since is not None else None
    except RabbitqError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    wanted = EventFilter(since=start, task=task, task_id=task_id, heartbeats=heartbeats)

    def echo(event: dict[str, Any]) -> None:
        if as_json:
            click.echo(json.dumps(event, default=str))
        else:
            click.echo(format_event(event, wanted.name_of(event)))

    async def show() -> None:
        # One task's life is told in the order it happened: the stream holds events in the
        # order they reached the broker, and a producer's task-sent may come after the
        # worker's first word on the task.
        story: list[dict[str, Any]] | None = [] if task_id and not follow else None
        async for event in read_events(broker, since=start, follow=follow):
            if not wanted.keep(event):
                continue
            if story is not None:
                story.append(event)
            else:
                echo(event)
        for event in sorted(story or (), key=lambda e: e.get("timestamp") or 0):
            echo(event)

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(show())
    except RabbitqError as exc:
        raise click.ClickException(str(exc)) from None
