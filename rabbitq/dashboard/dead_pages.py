"""Dead letters: a queue's list, one letter (headers, arguments, traceback), and replay and
purge, each behind a confirm page whose form says ``confirm=yes``: a POST without it, or
without the session's CSRF token (``auth.checked_form``), changes nothing.

A queue name or task id may hold ``/``: it is one path segment (``path_segments.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from rabbitq.dashboard.auth import checked_form
from rabbitq.dashboard.dead_queues import DeadQueues
from rabbitq.dashboard.pages import render
from rabbitq.dashboard.path_segments import path_param
from rabbitq.dead_letter_details import ReplaySelection
from rabbitq.dead_letters import dead_queue_name
from rabbitq.errors import BrokerConnectionError, BrokerError, QueueNotFoundError

T = TypeVar("T")
logger = logging.getLogger("rabbitq.dashboard")


async def _call(request: Request, action: Callable[..., T], *args: object) -> T:
    """Run a blocking dead-queue action in a thread; broker failures become clear pages."""
    try:
        return await run_in_threadpool(action, *args)
    except QueueNotFoundError:
        raise HTTPException(404, f"There is no dead queue {_queue(request)!r}.") from None
    except BrokerConnectionError as exc:
        raise HTTPException(503, str(exc)) from None
    except BrokerError as exc:
        raise HTTPException(409, str(exc)) from None
    except Exception as exc:
        # pika raises some failures outside every tree we know (AMQPConnectorStackTimeout):
        # the page says the broker could not be read, the log has the traceback.
        logger.exception("dashboard: %s %s failed", request.method, request.url.path)
        raise HTTPException(
            503,
            f"The broker could not be read ({type(exc).__name__}: {exc}). "
            "The dashboard's log has the details.",
        ) from None


def _queue(request: Request) -> str:
    return dead_queue_name(path_param(request, "queue"))


def _dead_queues(request: Request) -> DeadQueues:
    dead_queues: DeadQueues = request.app.state.dead_queues
    return dead_queues


async def list_page(request: Request) -> Response:
    listing = await _call(request, _dead_queues(request).list, _queue(request))
    return render(request, "dead_list.html", {"listing": listing})


async def letter_page(request: Request) -> Response:
    task_id = path_param(request, "task_id")
    queue = _queue(request)
    details = await _call(request, _dead_queues(request).find, queue, task_id)
    if details is None:
        raise HTTPException(404, f"No dead letter with id {task_id!r} in {queue}.")
    return render(request, "dead_letter.html", {"queue": queue, "letter": details})


def _selection(ids: list[str], everything: bool) -> ReplaySelection:
    named = frozenset(i for i in ids if i)
    if everything and named:
        # all=1 replays every dead letter, whatever the ids say: asking both is a mistake.
        raise HTTPException(
            400,
            "Say either which dead letters to replay (id=...) or all of them (all=1), not both: "
            "nothing was replayed.",
        )
    selection = ReplaySelection(named, all=everything)
    if selection.is_empty:
        raise HTTPException(400, "Say which dead letters to replay: an id, or all of them.")
    return selection


async def replay_confirm(request: Request) -> Response:
    queue = _queue(request)
    selection = _selection(
        request.query_params.getlist("id"), request.query_params.get("all") == "1"
    )
    depth = await _call(request, _dead_queues(request).depth, queue)
    return render(
        request, "confirm_replay.html", {"queue": queue, "selection": selection, "depth": depth}
    )


def _confirmed(form: FormData) -> None:
    if form.get("confirm") != "yes":
        raise HTTPException(400, "Not confirmed: nothing was changed.")


async def replay(request: Request) -> Response:
    form = await checked_form(request)
    _confirmed(form)
    ids = [str(value) for value in form.getlist("id")]
    selection = _selection(ids, form.get("all") == "1")
    queue = _queue(request)
    replayed = await _call(request, _dead_queues(request).replay, queue, selection)
    return render(request, "replayed.html", {"queue": queue, "replayed": replayed})


async def purge_confirm(request: Request) -> Response:
    queue = _queue(request)
    depth = await _call(request, _dead_queues(request).depth, queue)
    return render(request, "confirm_purge.html", {"queue": queue, "depth": depth})


async def purge(request: Request) -> Response:
    _confirmed(await checked_form(request))
    queue = _queue(request)
    removed = await _call(request, _dead_queues(request).purge, queue)
    return render(request, "purged.html", {"queue": queue, "removed": removed})


routes = [
    Route("/dead/{queue}", list_page),
    Route("/dead/{queue}/letters/{task_id}", letter_page),
    Route("/dead/{queue}/replay", replay_confirm, methods=["GET"]),
    Route("/dead/{queue}/replay", replay, methods=["POST"]),
    Route("/dead/{queue}/purge", purge_confirm, methods=["GET"]),
    Route("/dead/{queue}/purge", purge, methods=["POST"]),
]
