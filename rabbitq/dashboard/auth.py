"""Who may use the dashboard, and which requests and POSTs it believes.

``Guard`` (a middleware) first refuses (403) any request a browser says another site's page
made (``Sec-Fetch-Site`` other than ``same-origin`` or ``none``), except a link followed to
the overview (a top-level navigation to ``/``, which changes and browses nothing). Without a
token an ``<img src="http://127.0.0.1:8080/dead/emails">`` on any page would otherwise make
the dashboard browse a dead queue. A request without the header (curl, Prometheus, an old browser)
is let through. Static files are exempt: they read nothing from the broker.

It then gives every request a session (``sessions.py``) and, when the dashboard has a token,
lets through only requests that carry it: ``Authorization: Bearer <token>`` (scripts), or a
session logged in through ``/login`` (people).

Every POST handler reads its form through ``checked_form``, which refuses (403) one without the
session's CSRF token. A request authorised by its ``Authorization`` header needs none: a
browser never adds that header by itself, so another site cannot forge one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp

from rabbitq.dashboard.sessions import COOKIE, Session, SessionSigner, token_matches

OPEN_PATHS = ("/login", "/static/")  # reachable before logging in
# Sec-Fetch-Site values of requests the dashboard's own pages make, or a person typing its
# address or opening a bookmark ("none"). A missing header is let through too (not a browser).
OWN_FETCH_SITES = ("same-origin", "none")


class Guard(BaseHTTPMiddleware):
    def __init__(self, app: ASGIApp, *, signer: SessionSigner, token: str | None) -> None:
        super().__init__(app)
        self.signer = signer
        self.token = token

    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if _from_another_site(request):
            return _cross_site_refusal(request)
        loaded = self.signer.load(request.cookies.get(COOKIE))
        request.state.session = loaded or self.signer.new()
        request.state.signer = self.signer
        request.state.bearer = self._bearer_ok(request)
        if self.token and not self._admitted(request):
            response = _refusal(request)
        else:
            response = await call_next(request)
        session: Session = request.state.session
        if session != loaded:  # new, logged in or out: (re)write the cookie
            response.set_cookie(
                COOKIE,
                self.signer.dump(session),
                max_age=self.signer.max_age,
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
            )
        return response

    def _bearer_ok(self, request: Request) -> bool:
        scheme, _, sent = request.headers.get("authorization", "").partition(" ")
        return (
            bool(self.token)
            and scheme.lower() == "bearer"
            and token_matches(self.token or "", sent.strip())
        )

    def _admitted(self, request: Request) -> bool:
        if request.state.bearer or request.state.session.logged_in:
            return True
        path = request.url.path
        return path == OPEN_PATHS[0] or path.startswith(OPEN_PATHS[1])


def _from_another_site(request: Request) -> bool:
    site = request.headers.get("sec-fetch-site")
    if site is None or request.url.path.startswith(OPEN_PATHS[1]):
        return False
    if _link_to_the_overview(request):
        return False
    return site.lower() not in OWN_FETCH_SITES


def _link_to_the_overview(request: Request) -> bool:
    """A person following a link to the overview from Grafana, Flower or a wiki: a top-level
    navigation that changes nothing and browses no dead queue (its figures come from the
    status snapshot). Every other page still needs the dashboard's own origin."""
    return (
        request.method == "GET"
        and request.url.path == "/"
        and request.headers.get("sec-fetch-mode") == "navigate"
        and request.headers.get("sec-fetch-dest") == "document"
    )


def _cross_site_refusal(request: Request) -> Response:
    text = (
        "The dashboard does not answer requests made by another site's page (Sec-Fetch-Site: "
        f"{request.headers.get('sec-fetch-site')}). Open it by its address or a bookmark."
    )
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": text}, status_code=403)
    return PlainTextResponse(text, status_code=403)


def _refusal(request: Request) -> Response:
    """People are sent to the login page; scripts (and POSTs) get a 401 that says why."""
    path = request.url.path
    wants_page = request.method == "GET" and not path.startswith(("/api/", "/metrics"))
    if wants_page:
        target = path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
    return JSONResponse(
        {"error": "this dashboard needs its token: Authorization: Bearer <token>, or log in"},
        status_code=401,
        headers={"WWW-Authenticate": 'Bearer realm="rabbitq dashboard"'},
    )


async def checked_form(request: Request) -> FormData:
    """The POST's form, once its CSRF token has been checked (403 if it fails)."""
    form = await request.form()
    if request.state.bearer:
        return form
    sent = form.get("csrf")
    signer: SessionSigner = request.state.signer
    if not signer.csrf_ok(request.state.session, sent if isinstance(sent, str) else None):
        raise HTTPException(
            403,
            "This form has expired or did not come from this dashboard (its CSRF token is "
            "missing or wrong). Go back, reload the page and try again.",
        )
    return form


def csrf_token(request: Request) -> str:
    signer: SessionSigner = request.state.signer
    return signer.csrf_token(request.state.session)


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path of this dashboard, never another site. A control
    character is refused too: browsers drop tabs and newlines from a URL, so ``/<tab>/evil.com``
    would become ``//evil.com``, another site."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in target):
        return "/"
    return target
