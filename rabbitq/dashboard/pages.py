"""Rendering a page: every template gets the session's CSRF token, the Flower link and whether
a login is in play, so no view can forget them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from rabbitq.dashboard.auth import csrf_token
from rabbitq.dashboard.config import DashboardConfig
from rabbitq.dashboard.path_segments import segment

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"


def templates() -> Jinja2Templates:
    page_templates = Jinja2Templates(directory=TEMPLATES)
    # A queue name or task id in a link: one segment, its "/" escaped (path_segments.py).
    page_templates.env.filters["segment"] = segment
    return page_templates


def render(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> Response:
    config: DashboardConfig = request.app.state.config
    page_templates: Jinja2Templates = request.app.state.templates
    shared = {
        "csrf": csrf_token(request),
        "flower": config.flower,
        "token_required": bool(config.token),
        "logged_in": request.state.session.logged_in,
    }
    return page_templates.TemplateResponse(
        request, template, {**shared, **context}, status_code=status_code
    )


def message_page(request: Request, title: str, text: str, status_code: int) -> Response:
    """A page that only says something: a refusal, a problem, a missing queue."""
    return render(request, "message.html", {"title": title, "text": text}, status_code)
