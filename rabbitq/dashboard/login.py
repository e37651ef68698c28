"""``/login`` and ``/logout``, for a dashboard started with a token. Logging in starts a new
session (a new id, so a session id planted before the login is worth nothing after it)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from rabbitq.dashboard.auth import checked_form, safe_next
from rabbitq.dashboard.config import DashboardConfig
from rabbitq.dashboard.pages import render
from rabbitq.dashboard.sessions import SessionSigner, token_matches


async def login_page(request: Request) -> Response:
    config: DashboardConfig = request.app.state.config
    target = safe_next(request.query_params.get("next"))
    if not config.token:
        return RedirectResponse(target, status_code=303)
    return render(request, "login.html", {"next": target, "error": None})


async def login(request: Request) -> Response:
    config: DashboardConfig = request.app.state.config
    form = await checked_form(request)
    target = safe_next(str(form.get("next") or "/"))
    sent = form.get("token")
    if not config.token or not token_matches(config.token, sent if isinstance(sent, str) else None):
        return render(
            request, "login.html", {"next": target, "error": "That is not the token."}, 401
        )
    signer: SessionSigner = request.state.signer
    request.state.session = signer.new(logged_in=True)
    return RedirectResponse(target, status_code=303)


async def logout(request: Request) -> Response:
    await checked_form(request)
    signer: SessionSigner = request.state.signer
    request.state.session = signer.new()
    return RedirectResponse("/login", status_code=303)


routes = [
    Route("/login", login_page, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
]
