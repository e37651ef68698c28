"""The headers every dashboard response carries, refusals and failures included: no framing
(a confirm button under someone else's page), no script but the dashboard's own, no sniffing
a JSON or text answer into a page, no dashboard URL in another site's ``Referer``.

``SecurityHeaders`` sets them on everything that passes through it, outside the host check, so
a 400 for a wrong ``Host`` has them too. Starlette answers an unhandled exception outside every
middleware, so its handler (``app._unexpected``) adds them itself with ``add_security_headers``.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def add_security_headers(headers: MutableHeaders) -> None:
    for name, value in SECURITY_HEADERS.items():
        headers.setdefault(name, value)


def with_security_headers(response: Response) -> Response:
    add_security_headers(response.headers)
    return response


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                add_security_headers(MutableHeaders(scope=message))
            await send(message)

        await self.app(scope, receive, send_with_headers)
