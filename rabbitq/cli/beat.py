"""``rabbitq beat``: run the periodic scheduler (many may run; one leads), or show its status."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import signal
import sys
from typing import Any

import click

from rabbitq.amqp.beat_link import read_status
from rabbitq.app import App
from rabbitq.app_path import load_app
from rabbitq.beat.runner import Beat
from rabbitq.beat.schedule_file import load_schedule
from rabbitq.beat.schedules import Crontab, PeriodicEntry, format_duration, format_time
from rabbitq.cli.options import broker_option, loglevel_option, routing_option
from rabbitq.errors import RabbitqError, ScheduleConfigError
from rabbitq.routing import load_routing
from rabbitq.worker.process import configure_logging

group_option = click.option(
    "--group",
    default="",
    help="Name of an independent set of beats (queues rabbitq.beat.GROUP.*) [default: none].",
)


@click.group(invoke_without_command=True)
@click.option("-A", "--app", "app_path", metavar="MODULE[:ATTR]", help="Module holding the App.")
@click.option(
    "-s",
    "--schedule",
    "schedule_path",
    type=click.Path(dir_okay=False),
    envvar="RABBITQ_SCHEDULE",
    help="Schedule YAML file, added to the app's add_periodic entries [env: RABBITQ_SCHEDULE].",
)
@routing_option
@group_option
@click.option("--dry-run", is_flag=True, help="Print each entry's next fire times and exit.")
@click.option(
    "--count", default=5, show_default=True, type=click.IntRange(1), help="With --dry-run."
)
@click.option(
    "--retry-interval",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0.05),
    help="Seconds between a standby's attempts to take the lead.",
)
@click.option(
    "--heartbeat",
    default=2,
    show_default=True,
    type=click.IntRange(1),
    help="AMQP heartbeat in seconds: a leader cut off by the network loses the lead after two "
    "to three of these (about 4 s at the default).",
)
@loglevel_option
@click.pass_context
def beat(
    ctx: click.Context,
    app_path: str | None,
    schedule_path: str | None,
    routing: str | None,
    group: str,
    dry_run: bool,
    count: int,
    retry_interval: float,
    heartbeat: int,
    loglevel: str,
) -> None:
    """Send periodic tasks. Run several: one leads, the others take over if it dies."""
    if ctx.invoked_subcommand is not None:
        return
    if app_path is None:
        raise click.UsageError("give the app: rabbitq beat -A MODULE[:ATTR]")
    if "" not in sys.path:
        sys.path.insert(0, "")  # like `python -m`: the app module is found from the cwd
    try:
        app = load_app(app_path)
        if routing:
            app.topology = load_routing(routing)
        entries = collect_entries(app, schedule_path)
        if dry_run:
            print_upcoming(entries, count, dt.datetime.now(dt.UTC))
            return
        configure_logging(loglevel)
        if loglevel.upper() != "DEBUG":
            # pika narrates every connection step, and a standby's probe is refused (405)
            # every retry_interval by design.
            logging.getLogger("pika").setLevel(logging.WARNING)
            logging.getLogger("pika.channel").setLevel(logging.ERROR)
        runner = Beat(app, entries, group=group, retry_interval=retry_interval, heartbeat=heartbeat)
    except RabbitqError as exc:
        raise click.ClickException(str(exc)) from None
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: runner.stop())
    runner.run()


def collect_entries(app: App, schedule_path: str | None) -> list[PeriodicEntry]:
    entries = list(app.periodic)
    if schedule_path:
        names = {entry.name for entry in entries}
        for entry in load_schedule(schedule_path, app):
            if entry.name in names:
                raise ScheduleConfigError(
                    f"entry {entry.name!r} is also defined in code (app.add_periodic)",
                    source=schedule_path,
                    line=entry.line,
                )
            entries.append(entry)
    if not entries:
        raise ScheduleConfigError(
            "nothing to schedule: no app.add_periodic entries and no --schedule file"
        )
    return entries


def print_upcoming(entries: list[PeriodicEntry], count: int, now: dt.datetime) -> None:
    for entry in entries:
        schedule = entry.schedule
        zone = schedule.timezone if isinstance(schedule, Crontab) else dt.UTC
        click.echo(
            f"{entry.name}: {entry.signature!r}  [{schedule.describe()}; "
            f"catch_up {entry.catch_up}, grace {format_duration(entry.grace)}]"
        )
        for moment in schedule.upcoming(now, count):
            local = moment.astimezone(zone)
            click.echo(f"  {local:%Y-%m-%d %H:%M:%S %Z}  ({format_time(moment)})")


@beat.command()
@broker_option
@group_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON object.")
def status(broker: str, group: str, as_json: bool) -> None:
    """Who leads, and each entry's last and next tick, as the leader last wrote them."""
    try:
        found = read_status(broker, group)
    except RabbitqError as exc:
        raise click.ClickException(str(exc)) from None
    state = found.state
    if as_json:
        document: dict[str, Any] = {"led": found.led, "state": None}
        if state is not None:
            document["state"] = json.loads(
                json.dumps(dataclasses.asdict(state), default=_json_time)
            )
        click.echo(json.dumps(document))
        return
    if not found.led:
        click.echo("no beat leads")
    elif state is not None and state.leader:
        age = (dt.datetime.now(dt.UTC) - state.written_at).total_seconds() if state.written_at \
            else float("nan")  # fmt: skip
        since = format_time(state.leader_since) if state.leader_since else "?"
        click.echo(f"leader: {state.leader} (since {since}; state written {age:.1f} s ago)")
    else:
        click.echo("a beat leads (it has not written its state yet)")
    if state is None:
        click.echo("no state recorded")
        return
    click.echo(f"{'entry':<24} {'last tick':<26} {'next tick':<26} schedule")
    for name, record in sorted(state.entries.items()):
        upcoming = format_time(record.next) if record.next else "-"
        click.echo(f"{name:<24} {format_time(record.last):<26} {upcoming:<26} {record.schedule}")


def _json_time(value: object) -> str:
    if isinstance(value, dt.datetime):
        return format_time(value)
    raise TypeError(type(value).__name__)
