"""``rabbitq dead list|show|replay|purge QUEUE``: look after dead letters."""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import TYPE_CHECKING

import click

from rabbitq.amqp.dead_queue import DeadLetter, DeadQueue
from rabbitq.cli.options import broker_option
from rabbitq.dead_letter_details import DeadLetterDetails, ReplaySelection
from rabbitq.dead_letters import dead_queue_name
from rabbitq.errors import RabbitqError

if TYPE_CHECKING:
    from click._termui_impl import ProgressBar


def _open(broker: str, queue: str, *, browse: bool = True) -> DeadQueue:
    """Open the dead queue; ``browse``: refuse if looking could make a dead letter vanish."""
    try:
        dead_queue = DeadQueue(broker, dead_queue_name(queue))
    except RabbitqError as exc:
        raise click.ClickException(str(exc)) from None
    if browse and dead_queue.browse_problem:
        dead_queue.close()
        raise click.ClickException(dead_queue.browse_problem)
    return dead_queue


@click.group()
def dead() -> None:
    """Dead letters: QUEUE is a task queue (emails) or its dead queue (emails.dead)."""


@dead.command("list")
@click.argument("queue")
@broker_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per dead letter.")
def list_(queue: str, broker: str, as_json: bool) -> None:
    """List dead letters: id, task, reason, when, attempts. Nothing is removed."""
    with _open(broker, queue) as dead_queue:
        summaries = [letter.summary for letter in dead_queue]
    if as_json:
        for summary in summaries:
            click.echo(json.dumps(dataclasses.asdict(summary)))
        return
    click.echo(f"{dead_queue.queue}: {len(summaries)} dead letter(s)")
    for s in summaries:
        attempts = "" if s.attempts is None else str(s.attempts)
        click.echo(
            f"  {s.id:<36}  {s.task:<32}  {s.reason:<18}  {s.dead_at[:19]:<19}  "
            f"{attempts:>3}  {s.exception[:60]}"
        )


@dead.command()
@click.argument("queue")
@click.argument("task_id")
@broker_option
def show(queue: str, task_id: str, broker: str) -> None:
    """Everything about one dead letter: headers, arguments, traceback."""
    with _open(broker, queue) as dead_queue:
        found = next((letter for letter in dead_queue if letter.summary.id == task_id), None)
    if found is None:
        raise click.ClickException(f"no dead letter with id {task_id!r} in {dead_queue.queue}")
    _show(found)


def _show(letter: DeadLetter) -> None:
    details = DeadLetterDetails.of(letter.envelope)
    for key, value in details.headers:
        click.echo(f"{key}: {value}")
    if details.body_problem is None:
        click.echo(f"args: {details.args}\nkwargs: {details.kwargs}")
    else:
        click.echo(f"body: {details.body_problem}")
    if details.traceback is not None:
        click.echo("\n" + details.traceback)


@dead.command()
@click.argument("queue")
@broker_option
@click.option("--id", "task_ids", multiple=True, help="Replay this task id (repeatable).")
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter.")
@click.option("--task", "task_name", default=None, help="Only dead letters of this task.")
def replay(
    queue: str, broker: str, task_ids: tuple[str, ...], replay_all: bool, task_name: str | None
) -> None:
    """Put dead letters back on the queue they came from (confirmed before removal)."""
    selection = ReplaySelection(frozenset(task_ids), task_name, replay_all)
    if selection.is_empty:
        raise click.UsageError("say which: --id ID (repeatable), --task NAME, or --all")
    # Replaying everything hands nothing back (only a copy the broker refused), so it needs
    # no browsing; a selection hands back every dead letter it passes over.
    with _open(broker, queue, browse=not selection.everything) as dead_queue:
        bar: ProgressBar[int] = click.progressbar(
            length=dead_queue.depth, label=f"replaying from {dead_queue.queue}", file=sys.stderr
        )
        with bar:
            try:
                replayed, problems = dead_queue.replay(
                    lambda letter: selection.takes(letter.summary), bar.update
                )
            except RabbitqError as exc:
                raise click.ClickException(str(exc)) from None
    click.echo(f"replayed {replayed} dead letter(s)")
    for problem in problems:
        click.echo(f"not replayed (left in the dead queue): {problem}", err=True)
    if problems:
        raise SystemExit(1)


@dead.command()
@click.argument("queue")
@broker_option
@click.option("--yes", is_flag=True, help="Do not ask.")
def purge(queue: str, broker: str, yes: bool) -> None:
    """Delete every dead letter in the queue."""
    with _open(broker, queue, browse=False) as dead_queue:
        if not yes:
            click.confirm(
                f"delete all {dead_queue.depth} message(s) in {dead_queue.queue}?", abort=True
            )
        removed = dead_queue.purge()
    click.echo(f"purged {removed} message(s) from {dead_queue.queue}")
