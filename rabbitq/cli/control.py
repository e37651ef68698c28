"""``rabbitq inspect`` and ``rabbitq control``: Celery's remote control, no Celery needed.

    rabbitq inspect ping|active|reserved|scheduled|revoked|registered|stats|active_queues|
                    conf|query_task ID...|clock|report
    rabbitq control revoke ID... [--terminate]|terminate ID...|shutdown|add_consumer QUEUE|
                    cancel_consumer QUEUE|time_limit TASK SOFT [HARD]|enable_events|
                    disable_events|heartbeat|rate_limit ...|pool_restart

Each node's answer is printed as it arrives (``->  node: OK`` or ``ERROR``), then how many
answered; ``--json`` prints ``{node: answer}`` instead. ``--timeout`` is the longest wait for
the next answer. No answer at all exits 69 (EX_UNAVAILABLE), as Celery's CLI does, and so
does the silence of any node named with ``-d`` (where Celery's exits 0 if another answered):
``rabbitq inspect ping -d NODE`` is a probe of that node. A broker that cannot be reached
exits 1, saying why. A revoke is stored in the broker all the same, and says so.
"""

from __future__ import annotations

import json
from typing import Any

import click

from rabbitq.app import App
from rabbitq.app_path import load_app
from rabbitq.cli.options import broker_option
from rabbitq.control.client import Reply, flatten
from rabbitq.errors import RabbitqError

EX_UNAVAILABLE = 69
INSPECT_COMMANDS = [
    "ping",
    "active",
    "reserved",
    "scheduled",
    "revoked",
    "registered",
    "stats",
    "active_queues",
    "conf",
    "query_task",
    "clock",
    "report",
]
CONTROL_COMMANDS = [
    "revoke",
    "terminate",
    "shutdown",
    "add_consumer",
    "cancel_consumer",
    "time_limit",
    "rate_limit",
    "enable_events",
    "disable_events",
    "heartbeat",
    "pool_restart",
]


def _common(function: Any) -> Any:
    options = [
        broker_option,
        click.option(
            "-A",
            "--app",
            "app_path",
            metavar="MODULE[:ATTR]",
            help="Module holding the App (its broker and settings).",
        ),
        click.option(
            "-d", "--destination", metavar="NODE[,NODE]", help="Only these nodes (comma-separated)."
        ),
        click.option(
            "-t",
            "--timeout",
            type=float,
            default=1.0,
            show_default=True,
            help="Seconds to wait for the next reply.",
        ),
        click.option("-j", "--json", "as_json", is_flag=True, help="Print {node: reply} as JSON."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@click.command()
@_common
@click.argument("method", type=click.Choice(INSPECT_COMMANDS))
@click.argument("arguments", nargs=-1)
def inspect(
    broker: str,
    app_path: str | None,
    destination: str | None,
    timeout: float,
    as_json: bool,
    method: str,
    arguments: tuple[str, ...],
) -> None:
    """Ask the workers (Celery's `celery inspect`): what they run, hold, know and are."""
    app = _app(app_path, broker)
    if method == "query_task":
        if not arguments:
            raise click.UsageError("query_task needs at least one task id")
        request: dict[str, Any] = {"ids": list(arguments)}
    elif method == "registered":
        request = {"taskinfoitems": list(arguments)}
    elif method in ("active", "reserved"):
        request = {"safe": True}
    else:
        if arguments:
            raise click.UsageError(f"inspect {method} takes no arguments")
        request = {}
    _ask(app, method, request, destination, timeout, as_json)


@click.command()
@_common
@click.option("--terminate", is_flag=True, help="revoke: also stop the task if it is running.")
@click.option("--signal", default=None, help="revoke/terminate: the signal's name (recorded).")
@click.argument("method", type=click.Choice(CONTROL_COMMANDS))
@click.argument("arguments", nargs=-1)
def control(
    broker: str,
    app_path: str | None,
    destination: str | None,
    timeout: float,
    as_json: bool,
    terminate: bool,
    signal: str | None,
    method: str,
    arguments: tuple[str, ...],
) -> None:
    """Steer the workers (Celery's `celery control`). A revoke is kept in the broker
    (rabbitq.revocations): the task never starts, on any worker, also after restarts."""
    app = _app(app_path, broker)
    nodes = _nodes(destination)
    if method in ("revoke", "terminate"):
        if not arguments:
            raise click.UsageError(f"{method} needs at least one task id")
        ids = list(arguments)
        try:
            replies = app.control.revoke(
                ids,
                destination=nodes,
                terminate=terminate or method == "terminate",
                signal=signal,
                reply=True,
                timeout=timeout,
            )
        except RabbitqError as exc:
            raise click.ClickException(str(exc)) from None
        _print(replies, as_json)
        if not replies and not as_json:
            click.echo(
                f"revoke of {len(ids)} task(s) stored in rabbitq.revocations; no worker "
                f"answered within {timeout:g}s (each applies it when it starts)"
            )
        return
    _ask(app, method, _control_arguments(method, arguments), destination, timeout, as_json)


def _control_arguments(method: str, arguments: tuple[str, ...]) -> dict[str, Any]:
    if method in ("add_consumer", "cancel_consumer"):
        if len(arguments) != 1:
            raise click.UsageError(f"{method} needs one queue name")
        return {"queue": arguments[0]}
    if method == "time_limit":
        if len(arguments) not in (2, 3):
            raise click.UsageError("time_limit needs TASK SOFT [HARD] (seconds)")
        try:
            limits = [float(value) for value in arguments[1:]]
        except ValueError:
            raise click.UsageError("time_limit: SOFT and HARD are seconds") from None
        return {
            "task_name": arguments[0],
            "soft": limits[0],
            "hard": limits[1] if len(limits) > 1 else None,
        }
    if method == "rate_limit":
        if len(arguments) != 2:
            raise click.UsageError("rate_limit needs TASK RATE")
        return {"task_name": arguments[0], "rate_limit": arguments[1]}
    if arguments:
        raise click.UsageError(f"control {method} takes no arguments")
    return {}


def _app(app_path: str | None, broker: str) -> App:
    if app_path is None:
        return App(broker=broker)
    try:
        return load_app(app_path)
    except RabbitqError as exc:
        raise click.ClickException(str(exc)) from None


def _nodes(destination: str | None) -> list[str] | None:
    if destination is None:
        return None
    nodes = [node.strip() for node in destination.split(",") if node.strip()]
    if not nodes:
        raise click.BadParameter("name at least one node", param_hint="-d/--destination")
    return nodes


def _ask(
    app: App,
    method: str,
    arguments: dict[str, Any],
    destination: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    def show(reply: Reply) -> None:
        if not as_json:
            _print([reply], False, summary=False)

    try:
        replies = app.control.broadcast(
            method,
            arguments,
            destination=_nodes(destination),
            reply=True,
            timeout=timeout,
            callback=show,
        )
    except RabbitqError as exc:
        raise click.ClickException(str(exc)) from None
    if not replies:
        click.echo("Error: No nodes replied within time constraint", err=True)
        raise SystemExit(EX_UNAVAILABLE)
    if as_json:
        click.echo(json.dumps(flatten(replies), default=str, indent=None))
    else:
        count = len(replies)
        click.echo(f"\n{count} node{'s' if count != 1 else ''} online.")
    missing = silent_nodes(_nodes(destination), replies)
    if missing:
        # A node named with -d that stays silent is the answer a probe asks about: the
        # others' replies do not make up for it (Celery's CLI exits 0 here).
        click.echo(f"Error: no reply from {', '.join(missing)} within {timeout:g}s", err=True)
        raise SystemExit(EX_UNAVAILABLE)


def silent_nodes(named: list[str] | None, replies: list[Reply]) -> list[str]:
    """The nodes named with -d that did not reply, in the order named."""
    if named is None:
        return []
    answered = {node for reply in replies for node in reply}
    return [node for node in dict.fromkeys(named) if node not in answered]


def _print(replies: list[Reply], as_json: bool, *, summary: bool = True) -> None:
    if as_json:
        click.echo(json.dumps(flatten(replies) or {}, default=str))
        return
    for reply in replies:
        for node, value in reply.items():
            failed = isinstance(value, dict) and "error" in value
            click.echo(f"->  {node}: {'ERROR' if failed else 'OK'}")
            click.echo(_indent(_render(value)))
    if summary and replies:
        count = len(replies)
        click.echo(f"\n{count} node{'s' if count != 1 else ''} online.")


def _render(value: Any) -> str:
    if isinstance(value, list):
        if not value:
            return "- empty -"
        return "\n".join(f"* {_item(item)}" for item in value)
    if isinstance(value, dict) and len(value) == 1 and ("ok" in value or "error" in value):
        return str(next(iter(value.values())))
    return json.dumps(value, default=str, indent=4, sort_keys=True)


def _item(item: Any) -> str:
    return item if isinstance(item, str) else json.dumps(item, default=str)


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines())
