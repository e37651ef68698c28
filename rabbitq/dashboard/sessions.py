"""The dashboard's session: a signed cookie, and the CSRF token derived from it (pure).

The cookie reads ``<session id>.<1 if logged in, else 0>.<issued at, Unix seconds>.<HMAC-SHA256
of the rest>``, signed with a secret made when the process starts (a restart logs everyone
out; nothing is stored). A session is believed for ``SESSION_MAX_AGE`` (12 h) after it was
issued, then never again: a cookie copied off a machine, or a browser left logged in, stops
working by itself, and logging in again starts a new session. The time is inside what is
signed, so it cannot be moved forward.

The CSRF token of a session is another HMAC of its id: a page of the dashboard carries it in
its forms, and a POST must send it back. A page elsewhere cannot read it (same-origin policy,
and the cookie is ``SameSite=Strict``), so it cannot forge a POST that replays or purges.
Every comparison is ``hmac.compare_digest``: no timing tells how much of a guess was right.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

COOKIE = "rabbitq_dashboard"
SESSION_MAX_AGE = 12 * 3600  # seconds a session is believed after it was issued
CLOCK_SKEW = 60  # seconds a session may seem issued in the future (clock steps back)


@dataclass(frozen=True)
class Session:
    id: str
    logged_in: bool
    issued_at: int  # Unix seconds


class SessionSigner:
    def __init__(
        self,
        secret: bytes | None = None,
        *,
        max_age: int = SESSION_MAX_AGE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret if secret is not None else secrets.token_bytes(32)
        self.max_age = max_age
        self._clock = clock

    def new(self, *, logged_in: bool = False) -> Session:
        return Session(secrets.token_urlsafe(18), logged_in, int(self._clock()))

    def dump(self, session: Session) -> str:
        payload = f"{session.id}.{int(session.logged_in)}.{session.issued_at}"
        return f"{payload}.{self._sign('session', payload)}"

    def load(self, cookie: str | None) -> Session | None:
        """The session the cookie carries, or None when it is absent, malformed, forged or
        older than ``max_age``."""
        if not cookie or cookie.count(".") != 3:
            return None
        session_id, logged_in, issued_at, signature = cookie.split(".")
        expected = self._sign("session", f"{session_id}.{logged_in}.{issued_at}")
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            return None
        if logged_in not in ("0", "1") or not issued_at.isdigit():
            return None
        age = self._clock() - int(issued_at)
        if not -CLOCK_SKEW <= age <= self.max_age:
            return None
        return Session(session_id, logged_in == "1", int(issued_at))

    def csrf_token(self, session: Session) -> str:
        return self._sign("csrf", session.id)

    def csrf_ok(self, session: Session | None, sent: str | None) -> bool:
        if session is None or not sent:
            return False
        return hmac.compare_digest(sent.encode(), self.csrf_token(session).encode())

    def _sign(self, purpose: str, payload: str) -> str:
        # The purpose keeps a session signature from ever being taken for a CSRF token.
        message = f"{purpose}:{payload}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()


def token_matches(expected: str, sent: str | None) -> bool:
    return sent is not None and hmac.compare_digest(sent.encode(), expected.encode())
