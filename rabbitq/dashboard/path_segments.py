"""Queue names and task ids in paths, ``/`` included.

A queue ``billing/emails`` or a task id ``import/42`` travels as one path segment,
``/dead/billing%2Femails``. Servers decode ``%2F`` before routing, so Starlette would see
``/dead/billing/emails`` and answer 404. ``KeepEncodedSlashes`` routes the paths under
``/dead/`` on the path as sent instead: every escape is decoded except ``%2F`` and ``%25``, so
a segment stays one segment, and ``path_param`` decodes those two. Keeping ``%25`` as well
is what makes that exact: a queue literally named ``a%2Fb`` arrives as ``a%252Fb``, reaches
the route as ``a%252Fb``, and decodes to ``a%2Fb``, not ``a/b``.

Links are built with ``segment`` (Jinja's ``urlencode`` leaves ``/`` as it is).
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, unquote_to_bytes

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

ROUTED_AS_SENT = "/dead/"
_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})")
_KEPT = {b"2f", b"25"}  # "/" and "%": left escaped for path_param


def segment(value: object) -> str:
    """``value`` as one path segment: everything but unreserved characters escaped."""
    return quote(str(value), safe="")


def path_param(request: Request, name: str) -> str:
    return unquote(str(request.path_params[name]))


def routing_path(raw_path: bytes) -> str:
    """The path to route on: decoded, but for ``%2F`` and ``%25``."""

    def decode(match: re.Match[bytes]) -> bytes:
        if match.group(1).lower() in _KEPT:
            return b"%" + match.group(1).upper()
        return unquote_to_bytes(match.group(0))

    return _ESCAPE.sub(decode, raw_path).decode("utf-8", errors="replace")


class KeepEncodedSlashes:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw_path = scope.get("raw_path")
        if scope["type"] == "http" and raw_path and scope["path"].startswith(ROUTED_AS_SENT):
            scope = {**scope, "path": routing_path(raw_path.split(b"?", 1)[0])}
        await self.app(scope, receive, send)
