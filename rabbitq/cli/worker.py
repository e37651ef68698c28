"""``rabbitq worker``: consume queues and run their tasks."""

from __future__ import annotations

import sys
from dataclasses import replace

import click

from rabbitq.cli.options import loglevel_option, routing_option
from rabbitq.errors import RabbitqError
from rabbitq.nodename import DEFAULT_NODENAME, format_nodename
from rabbitq.task_logs import LOG_FORMATS, LogFormat
from rabbitq.timeouts import refuse_limits_over_the_ceiling
from rabbitq.worker.process import WorkerConfig, load_configured_app, run_worker_process
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
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default=None,
    help="plain lines, or one JSON object per record; both carry the running task's id, "
    "name, queue, retries and trace ids [default: App(log_format), plain].",
)
@click.option(
    "--shutdown-timeout",
    type=float,
    default=None,
    help="Seconds to wait for running tasks on SIGTERM [default: no limit]; also how long "
    "a process recycled for a stuck thread lets its other tasks finish [default: 60].",
)
@click.option(
    "--max-tasks-per-child",
    type=click.IntRange(1),
    default=None,
    help="Replace a worker process after it has run this many tasks.",
)
@click.option(
    "--max-memory-per-child",
    type=click.IntRange(1),
    default=None,
    metavar="KIB",
    help="Replace a worker process whose resident memory exceeds this many KiB after a task.",
)
@click.option(
    "-n",
    "--hostname",
    "nodename",
    default=DEFAULT_NODENAME,
    show_default=True,
    help="Node name, as Celery forms it: %h host, %n host without domain, %d domain, "
    "%i process index (1..N under -P N); each process gets -<index> unless %i/%I is used.",
)
@click.option(
    "-E",
    "--task-events",
    "task_events",
    flag_value=True,
    default=None,
    help="Send task events (Flower, celery-exporter) [default: App(worker_send_task_events)].",
)
@click.option(
    "--without-heartbeat",
    is_flag=True,
    help="Send no worker events (worker-online, worker-heartbeat every 2 s, worker-offline).",
)
@click.option(
    "--no-chords",
    is_flag=True,
    help="Do not stand as chord coordinator (consume rabbitq.chords) in this worker.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Serve Prometheus metrics on this port at /metrics (the supervisor serves all "
    "processes' sum) [default: App(metrics_port), else none].",
)
@click.option(
    "--metrics-bind",
    default=None,
    metavar="ADDRESS",
    help="Address for --metrics-port [default: App(metrics_bind), 0.0.0.0].",
)
@click.option(
    "--health-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Answer GET /health (and /) on this port: 200 while connected and consuming every "
    "queue, 503 otherwise (under -P N: the supervisor, 200 only if every process is).",
)
@click.option(
    "--health-bind",
    default="0.0.0.0",
    show_default=True,
    metavar="ADDRESS",
    help="Address for --health-port.",
)
def worker(
    app_path: str,
    queues: str,
    concurrency: int,
    prefetch: int | None,
    processes: int,
    routing: str | None,
    loglevel: str,
    log_format: LogFormat | None,
    shutdown_timeout: float | None,
    max_tasks_per_child: int | None,
    max_memory_per_child: int | None,
    nodename: str,
    task_events: bool | None,
    without_heartbeat: bool,
    no_chords: bool,
    metrics_port: int | None,
    metrics_bind: str | None,
    health_port: int | None,
    health_bind: str,
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
        max_tasks_per_child=max_tasks_per_child,
        max_memory_per_child=max_memory_per_child,
        nodename=nodename,
        processes=processes,
        task_events=task_events,
        heartbeat=not without_heartbeat,
        health_port=health_port,
        health_bind=health_bind,
    )
    try:
        format_nodename(nodename, processes=processes)  # a bad template is refused here
        # Refused here, once, rather than in every child its supervisor would restart.
        app = load_configured_app(config)
        refuse_limits_over_the_ceiling(app.tasks, app.consumer_timeout)
        config = replace(
            config,
            metrics_port=metrics_port if metrics_port is not None else app.metrics_port,
            metrics_bind=metrics_bind if metrics_bind is not None else app.metrics_bind,
            log_format=log_format or app.log_format,
        )
        if processes == 1:
            run_worker_process(config)
        else:
            sys.exit(Supervisor(config, processes).run())
    except RabbitqError as exc:
        raise click.ClickException(str(exc)) from None
