"""``rabbitq status``: queues, workers, dead letters, delays, chords and the beat on one screen."""

from __future__ import annotations

import json
import time

import click

from rabbitq.amqp.status_collector import StatusCollector, hear_workers
from rabbitq.cli.options import broker_option, management_url_option
from rabbitq.status.check import judge_check
from rabbitq.status.render import render_text
from rabbitq.status.snapshot import snapshot_to_json

CLEAR = "\x1b[H\x1b[2J"


@click.command()
@broker_option
@management_url_option
@click.option("--json", "as_json", is_flag=True, help="Print the snapshot as one JSON object.")
@click.option(
    "--watch",
    type=float,
    default=None,
    is_flag=False,
    flag_value=2.0,
    metavar="[SECONDS]",
    help="Refresh every SECONDS (2 when given alone) until interrupted.",
)
@click.option("--all", "show_all", is_flag=True, help="Also empty dead queues and other queues.")
@click.option("--beat-group", default="", help="The beat group to show (default: the default).")
@click.option(
    "--check",
    is_flag=True,
    help="Print one line and exit 0 if the broker is reachable and enough workers are alive "
    "(heard by heartbeat), 1 otherwise. Needs no management API.",
)
@click.option(
    "--min-workers",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="--check: alive workers needed (each process of -P N counts as one).",
)
@click.option(
    "--queue",
    "check_queues",
    multiple=True,
    metavar="QUEUE",
    help="--check: count only workers consuming QUEUE; repeated, each QUEUE needs "
    "--min-workers of its own.",
)
def status(
    broker: str,
    management_url: str | None,
    as_json: bool,
    watch: float | None,
    show_all: bool,
    beat_group: str,
    check: bool,
    min_workers: int,
    check_queues: tuple[str, ...],
) -> None:
    """One picture of the system: queues, workers (from heartbeats), dead letters with the
    newest reason, delay levels, chords in flight, the beat's leader and next ticks.

    Everything is read from RabbitMQ; the first picture takes about one heartbeat interval
    (2.5 s), to hear every worker."""
    if check:
        if as_json or watch is not None or show_all:
            raise click.UsageError("--check takes none of --json, --watch, --all")
        _check(broker, min_workers, check_queues)
        return
    if watch is not None and watch <= 0:
        raise click.BadParameter("must be more than 0 seconds", param_hint="--watch")
    with StatusCollector(broker, management_url, beat_group=beat_group) as collector:
        try:
            while True:
                snapshot = collector.collect()
                if as_json:
                    click.echo(json.dumps(snapshot_to_json(snapshot)))
                else:
                    prefix = CLEAR if watch is not None else ""
                    click.echo(prefix + render_text(snapshot, show_all=show_all))
                if watch is None:
                    return
                time.sleep(watch)
        except KeyboardInterrupt:
            return  # Ctrl-C ends a watch, whenever it comes: exit 0


def _check(broker: str, min_workers: int, queues: tuple[str, ...]) -> None:
    problem, workers = hear_workers(broker)
    verdict = judge_check(problem, workers, min_workers=min_workers, queues=queues)
    click.echo(verdict.line, err=not verdict.healthy)
    if not verdict.healthy:
        raise SystemExit(1)
