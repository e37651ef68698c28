"""``rabbitq purge QUEUE... [--yes]``: delete the messages waiting in named task queues.

Celery's ``celery purge`` empties every queue the app knows unless told otherwise; here the
queues are always named, so a purge never reaches a queue nobody typed. Every name is looked
up before anything is purged: one missing queue (a typo) stops the whole command.
"""

from __future__ import annotations

import sys

import click

from rabbitq.amqp.queue_purge import message_counts, purge_queues
from rabbitq.cli.options import app_from_options, app_option, broker_option
from rabbitq.errors import RabbitqError
from rabbitq.topology import DEAD_SUFFIX

# rabbitq's own queues hold state, not waiting tasks: delayed tasks (delay levels), chords
# in flight, revocations, limits, events, reply queues. Emptying one loses work silently.
OWN_PREFIX = "rabbitq."


def refusal(queue: str) -> str | None:
    """Why ``queue`` is not purged by this command, or None."""
    if queue.startswith(OWN_PREFIX):
        return (
            f"{queue!r} is one of rabbitq's own queues (delayed tasks, chords, revocations, "
            "limits, events or replies); purging it would lose that state, so "
            "`rabbitq purge` does not"
        )
    if queue.endswith(DEAD_SUFFIX):
        return f"{queue!r} is a dead-letter queue: use `rabbitq dead purge {queue}`"
    return None


@click.command()
@click.argument("queues", nargs=-1, required=True, metavar="QUEUE...")
@click.option(
    "--yes", "-f", "--force", "yes", is_flag=True, help="Do not ask (Celery's -f/--force)."
)
@app_option
@broker_option
def purge(queues: tuple[str, ...], yes: bool, app_path: str | None, broker: str) -> None:
    """Delete every message waiting in each QUEUE (task queues, named one by one).

    Asks first unless --yes; without a terminal to ask on, refuses. Messages that workers hold
    unacked are not removed."""
    names = list(dict.fromkeys(queues))  # each once, in the order given
    refused = [why for queue in names if (why := refusal(queue))]
    if refused:
        raise click.ClickException("; ".join(refused) + "; nothing was purged")
    app = app_from_options(app_path, broker)
    try:
        counts = message_counts(app.broker_url, names)
    except RabbitqError as exc:
        raise click.ClickException(str(exc)) from None
    if not yes:
        _confirm(counts)
    try:
        for queue, removed in purge_queues(app.broker_url, names):
            click.echo(f"purged {removed} message(s) from {queue}")
    except RabbitqError as exc:
        raise click.ClickException(str(exc)) from None


def _confirm(counts: dict[str, int]) -> None:
    listed = ", ".join(f"{queue} ({count})" for queue, count in counts.items())
    if not sys.stdin.isatty():
        # A script or a pipe cannot answer; purging unasked is what --yes is for.
        raise click.ClickException(
            f"not purging {listed}: no terminal to confirm on; pass --yes to purge without asking"
        )
    click.confirm(f"delete the waiting messages of {listed}?", abort=True)
