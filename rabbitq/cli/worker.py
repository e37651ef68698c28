"""``rabbitq worker``: consume queues and run their tasks."""

from __future__ import annotations

import sys

import click

from rabbitq.cli.options import loglevel_option, routing_option
from rabbitq.errors import RabbitqError
from rabbitq.worker.process import WorkerConfig, run_worker_process
from rabbitq.worker.supervisor import Supervisor


@click.command()
@click.option(
    "-A",
    "--app",
    "app_path",
    required=True,
    metavar="MODULE[:ATTR]",
    help="Module holding the rabbitq.App (e.g. shop.tasks or shop.tasks:app).",
)
@click.option(
    "-Q",
    "--queues",
    default="default",
    show_default=True,
    help="Comma-separated queues to consume.",
)
@click.option(
    "-c",
    "--concurrency",
    default=8,
    show_default=True,
    type=click.IntRange(1),
    help="Tasks run at once per process (thread pool size for plain functions).",
)
@click.option(
    "--prefetch",
    type=click.IntRange(1),
    default=None,
    help="Unacked messages per queue per process [default: 4 x concurrency].",
)
@click.option(
    "-P",
    "--processes",
    default=1,
    show_default=True,
    type=click.IntRange(1),
    help="Worker processes, supervised and restarted if they die.",
)
@routing_option
@loglevel_option
@click.option(
    "--shutdown-timeout",
    type=float,
    default=None,
    help="Seconds to wait for running tasks on SIGTERM [default: no limit].",
)
@click.option(
    "--no-chords",
    is_flag=True,
    help="Do not stand as chord coordinator (consume rabbitq.chords) in this worker.",
)
def worker(
    app_path: str,
    queues: str,
    concurrency: int,
    prefetch: int | None,
    processes: int,
    routing: str | None,
    loglevel: str,
    shutdown_timeout: float | None,
    no_chords: bool,
) -> None:
    """Consume QUEUES and run their tasks (acks after each task finishes)."""
    if "" not in sys.path:
        sys.path.insert(0, "")  # like `python -m`: the app module is found from the cwd
    names = tuple(q.strip() for q in queues.split(",") if q.strip())
    if not names:
        raise click.UsageError("--queues names no queue")
    config = WorkerConfig(
        app_path=app_path,
        queues=names,
        concurrency=concurrency,
        prefetch=prefetch,
        routing=routing,
        loglevel=loglevel,
        shutdown_timeout=shutdown_timeout,
        coordinate_chords=not no_chords,
    )
    try:
        if processes == 1:
            run_worker_process(config)
        else:
            sys.exit(Supervisor(config, processes).run())
    except RabbitqError as exc:
        raise click.ClickException(str(exc)) from None
