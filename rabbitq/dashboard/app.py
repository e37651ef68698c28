"""``create_app``: the dashboard's Starlette app, wired from its parts (see ``__init__``)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

# First, before any Starlette import here or in the modules below: without the dashboard
# extra this raises MissingExtraError naming it, not ModuleNotFoundError: starlette.
import rabbitq.dashboard.web_stack  # noqa: F401

# isort: split
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from rabbitq.dashboard import dead_pages, login, overview
from rabbitq.dashboard.auth import Guard
from rabbitq.dashboard.config import DashboardConfig
from rabbitq.dashboard.dead_queues import DeadQueues
from rabbitq.dashboard.metrics import metrics_routes
from rabbitq.dashboard.pages import STATIC, message_page, templates
from rabbitq.dashboard.path_segments import KeepEncodedSlashes
from rabbitq.dashboard.security_headers import SecurityHeaders, with_security_headers
from rabbitq.dashboard.sessions import SessionSigner
from rabbitq.dashboard.status_feed import StatusSource

logger = logging.getLogger("rabbitq.dashboard")

TITLES = {
    400: "Not done",
    403: "Refused",
    404: "Not found",
    409: "Not possible",
    503: "Broker unreachable",
}


def create_app(
    config: DashboardConfig,
    status: StatusSource,
    *,
    dead_queues: DeadQueues | None = None,
    signer: SessionSigner | None = None,
    allowed_hosts: tuple[str, ...] | None = None,
) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        status.close()

    app = Starlette(
        routes=[
            *overview.routes,
            *dead_pages.routes,
            *login.routes,
            *metrics_routes(status),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        middleware=[  # outermost first
            Middleware(SecurityHeaders),
            Middleware(
                TrustedHostMiddleware, allowed_hosts=list(allowed_hosts or config.allowed_hosts)
            ),
            Middleware(KeepEncodedSlashes),
            Middleware(Guard, signer=signer or SessionSigner(), token=config.token),
        ],
        exception_handlers={HTTPException: _http_problem, Exception: _unexpected},
        lifespan=lifespan,
    )
    app.state.config = config
    app.state.status = status
    app.state.dead_queues = dead_queues or DeadQueues(config.broker_url)
    app.state.templates = templates()
    return app


async def _http_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
    title = TITLES.get(exc.status_code, "Problem")
    return message_page(request, title, str(exc.detail), exc.status_code)


async def _unexpected(request: Request, exc: Exception) -> Response:
    # Logged with its traceback for the operator; the answer says only that it failed. Starlette
    # calls this outside every middleware, so it adds the security headers itself.
    logger.exception("dashboard: %s %s failed", request.method, request.url.path, exc_info=exc)
    text = f"The dashboard failed to answer: {type(exc).__name__}: {exc}. See its log."
    if request.url.path.startswith("/api/"):
        return with_security_headers(JSONResponse({"error": text}, status_code=500))
    return with_security_headers(Response(text, status_code=500, media_type="text/plain"))
