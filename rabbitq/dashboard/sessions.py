"""The dashboard's session: a signed cookie, and the CSRF token derived from it (pure).

The cookie reads ``<session id>.<1 if logged in, else 0>.<HMAC-SHA256 of both>``, signed with
a secret made when the process starts (a restart logs everyone out; nothing is stored). The
CSRF token of a session is another HMAC of its id: a page of the dashboard carries it in its
forms, and a POST must send it back. A page elsewhere cannot read it (same-origin policy, and
the cookie is ``SameSite=Strict``), so it cannot forge a POST that replays or purges.
Every comparison is ``hmac.compare_digest``: no timing tells how much of a guess was right.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

COOKIE = "rabbitq_dashboard"


@dataclass(frozen=True)
class Session:
    id: str
    logged_in: bool = False


class SessionSigner:
    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret if secret is not None else secrets.token_bytes(32)

    def new(self, *, logged_in: bool = False) -> Session:
        return Session(secrets.token_urlsafe(18), logged_in)

    def dump(self, session: Session) -> str:
        payload = f"{session.id}.{int(session.logged_in)}"
        return f"{payload}.{self._sign('session', payload)}"

    def load(self, cookie: str | None) -> Session | None:
        """The session the cookie carries, or None when it is absent, malformed or forged."""
        if not cookie or cookie.count(".") != 2:
            return None
        session_id, logged_in, signature = cookie.split(".")
        expected = self._sign("session", f"{session_id}.{logged_in}")
        if not hmac.compare_digest(signature, expected) or logged_in not in ("0", "1"):
            return None
        return Session(session_id, logged_in == "1")

    def csrf_token(self, session: Session) -> str:
        return self._sign("csrf", session.id)

    def csrf_ok(self, session: Session | None, sent: str | None) -> bool:
        if session is None or not sent:
            return False
        return hmac.compare_digest(sent, self.csrf_token(session))

    def _sign(self, purpose: str, payload: str) -> str:
        # The purpose keeps a session signature from ever being taken for a CSRF token.
        message = f"{purpose}:{payload}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()


def token_matches(expected: str, sent: str | None) -> bool:
    return sent is not None and hmac.compare_digest(sent.encode(), expected.encode())
