"""The overview: what ``rabbitq status`` shows, refreshed in the page from ``/api/status``
(the same JSON as ``rabbitq status --json``) 2 s after each answer (``static/overview.js``)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rabbitq.dashboard.pages import render
from rabbitq.dashboard.status_feed import Reading, StatusSource, read_status
from rabbitq.status.snapshot import snapshot_to_json


def status_document(reading: Reading) -> dict[str, Any]:
    if reading.snapshot is None:
        return {"error": reading.problem}
    return snapshot_to_json(reading.snapshot)


async def _reading(request: Request) -> Reading:
    source: StatusSource = request.app.state.status
    return await read_status(source)


async def overview(request: Request) -> Response:
    reading = await _reading(request)
    # The page draws itself from this document (static/overview.js), then from /api/status.
    return render(request, "overview.html", {"initial": status_document(reading)})


async def api_status(request: Request) -> Response:
    reading = await _reading(request)
    return JSONResponse(status_document(reading), status_code=200 if reading.snapshot else 503)


routes = [Route("/", overview), Route("/api/status", api_status)]
