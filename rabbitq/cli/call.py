"""``rabbitq call TASK``: send a task by name and print its id (Celery's ``celery call``).

The task need not be registered in the app (nor the app be given): the message is built and
routed as ``app.send_task`` does, with the app's routing, and the command returns once the
broker has confirmed it. Only the task id goes to stdout, so a script can keep it.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import click

from rabbitq.cli.options import app_from_options, app_option, broker_option, routing_option
from rabbitq.errors import RabbitqError
from rabbitq.routing import load_routing


def _json(value: str, option: str, kind: type, example: str) -> Any:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON ({exc}): {value!r}", param_hint=option) from None
    if not isinstance(parsed, kind):
        what = "array" if kind is list else "object"
        raise click.BadParameter(
            f"must be a JSON {what}, e.g. {example}; got {value!r}", param_hint=option
        )
    return parsed


def _eta(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        eta = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"not an ISO 8601 time: {value!r} (e.g. 2030-01-31T09:00:00+01:00)", param_hint="--eta"
        ) from None
    if eta.tzinfo is None:
        # Whose 09:00? The caller's, the broker's and the worker's clocks may disagree.
        raise click.BadParameter(
            f"{value!r} has no UTC offset; add one (…Z or …+01:00)", param_hint="--eta"
        )
    return eta


@click.command()
@click.argument("task_name", metavar="TASK")
@click.option(
    "-a",
    "--args",
    "args_json",
    default="[]",
    metavar="JSON",
    help="Positional arguments: a JSON array.",
)
@click.option(
    "-k",
    "--kwargs",
    "kwargs_json",
    default="{}",
    metavar="JSON",
    help="Keyword arguments: a JSON object.",
)
@click.option(
    "--countdown",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Run no sooner than SECONDS from now.",
)
@click.option(
    "--eta",
    default=None,
    metavar="ISO",
    help="Run no sooner than this time (ISO 8601, with an offset).",
)
@click.option(
    "--queue",
    default=None,
    metavar="QUEUE",
    help="Send to this queue (its name is the routing key).",
)
@click.option("--routing-key", default=None, metavar="KEY", help="Publish with this routing key.")
@app_option
@broker_option
@routing_option
def call(
    task_name: str,
    args_json: str,
    kwargs_json: str,
    countdown: float | None,
    eta: str | None,
    queue: str | None,
    routing_key: str | None,
    app_path: str | None,
    broker: str,
    routing: str | None,
) -> None:
    """Send TASK by name, wait for the broker's confirm, print the task id."""
    args = _json(args_json, "--args", list, "'[2, 3]'")
    kwargs = _json(kwargs_json, "--kwargs", dict, "'{\"user_id\": 7}'")
    if countdown is not None and eta is not None:
        raise click.UsageError("give --countdown or --eta, not both")
    options: dict[str, Any] = {
        "countdown": countdown,
        "eta": _eta(eta),
        "queue": queue,
        "routing_key": routing_key,
    }
    app = app_from_options(app_path, broker)
    try:
        if routing:
            app.topology = load_routing(routing)
        backend = app.backend
        note = None
        if backend is None:
            # The message then says so (ignore_result), and workers honour it.
            note = (
                "no result backend here, so the task's result will not be stored; to keep it, "
                "give the app (-A) or $RABBITQ_RESULT_BACKEND"
            )
        elif backend.uses_reply_queue:
            # An rpc result goes to the sender's own reply queue, and this process ends now:
            # nobody could read it, so ask for none rather than declare a queue for nothing.
            options["ignore_result"] = True
            note = (
                f"the result backend is {backend.url}: only the sending process can read an "
                "rpc result, and this one exits, so the result is not kept"
            )
        result = app.send_task(task_name, args, kwargs, **options)
    except RabbitqError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        app.close()
    click.echo(result.id)
    if note is not None:
        click.echo(f"note: {note}", err=True)
