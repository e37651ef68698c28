"""``rabbitq result ID``: a task's state and result, read from the result backend.

Celery's ``celery result`` waits for the result; this reports what the backend holds now, or
waits up to ``--timeout`` seconds for a final state. Only the Redis and PostgreSQL backends
can answer from another process: an rpc result travels to the reply queue of the process
that sent the task, so for ``rpc://`` the command says so instead of waiting for a reply that
can never come here.

Exit status: 0 SUCCESS; 1 FAILURE or REVOKED (the error is printed), or no answer from the
backend; 75 (EX_TEMPFAIL: try again later) not ready yet (PENDING, STARTED, RETRY).
"""

from __future__ import annotations

import json
from typing import Any

import click

from rabbitq.cli.options import app_from_options, app_option
from rabbitq.errors import RabbitqError
from rabbitq.results.meta import EXCEPTION_STATES, PENDING, SUCCESS, ResultMeta

EX_TEMPFAIL = 75

NOT_STORED = (
    "no result is stored for this id: the task has not finished (or not started, with "
    "App(track_started=False)), ignores its result, its result expired, or no task has this id"
)

RPC_CANNOT_ANSWER = (
    "the rpc:// result backend cannot answer here: a worker sends the result to the reply "
    "queue of the process that sent the task, and only that process can read it "
    "(AsyncResult.get()). To read results from any process, use a redis:// or postgresql:// "
    "backend (docs/results.md)"
)

NO_BACKEND = (
    "no result backend: give --backend URL (redis://..., postgresql://...), an app that has "
    "one (-A), or $RABBITQ_RESULT_BACKEND"
)


def _as_json(value: Any) -> str:
    # Values JSON cannot hold (bytes, datetimes from msgpack) are shown as their str().
    return json.dumps(value, default=str, ensure_ascii=False)


@click.command()
@click.argument("task_id", metavar="ID")
@click.option(
    "--backend",
    "backend_url",
    default=None,
    metavar="URL",
    help="Result backend URL [default: the app's result_backend, else $RABBITQ_RESULT_BACKEND].",
)
@app_option
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Wait up to SECONDS for a final state [default: report the current state at once].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the whole result document as JSON.")
def result(
    task_id: str,
    backend_url: str | None,
    app_path: str | None,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Print the state and result of task ID (the result as JSON)."""
    app = app_from_options(app_path)
    try:
        if backend_url is not None:
            app.use_result_backend(backend_url)
        backend = app.backend
        if backend is None:
            raise click.ClickException(NO_BACKEND)
        if backend.uses_reply_queue:
            raise click.ClickException(RPC_CANNOT_ANSWER)
        if timeout is None:
            meta = backend.state(task_id)
        else:
            meta = backend.wait([task_id], timeout).get(task_id) or backend.state(task_id)
    except RabbitqError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(_as_json(meta.to_document()))
    else:
        _print(meta, timeout)
    if meta.status == SUCCESS:
        return
    raise SystemExit(1 if meta.ready else EX_TEMPFAIL)


def _print(meta: ResultMeta, timeout: float | None) -> None:
    click.echo(f"state: {meta.status}")
    # A RETRY carries the error it retries for, if the worker recorded one.
    if meta.status in EXCEPTION_STATES and (meta.ready or meta.result is not None):
        error = meta.error()
        click.echo(f"error: {error.exc_type}: {error.exc_message}")
        if meta.traceback:
            click.echo(meta.traceback.rstrip())
    elif meta.status == SUCCESS:
        click.echo(f"result: {_as_json(meta.result)}")
    if meta.date_done:
        click.echo(f"date_done: {meta.date_done}")
    if not meta.ready:
        waited = f" (waited {timeout:g}s)" if timeout is not None else ""
        why = NOT_STORED if meta.status == PENDING else "the task has not finished"
        click.echo(f"not ready{waited}: {why}", err=True)
