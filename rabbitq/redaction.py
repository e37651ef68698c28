"""Connection URLs as they may appear in logs, reprs, error messages and CLI output: without
the password.

``without_password`` is for a URL (or several joined by ``;``, a failover broker URL);
``redacted`` for any text that may quote one (a client library's error message).
"""

from __future__ import annotations

import re

MASK = "***"

# scheme://user:password@ — the password runs to the last '@' before a space or a ';' (the
# next failover URL): a password with an unescaped '@' is hidden whole, and should a query
# hold an '@' too, more is hidden than needed, never less.
_CREDENTIALS = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@;]*:)(?P<password>[^\s;]*)@"
)


def without_password(url: str) -> str:
    """``amqp://user:secret@host/`` -> ``amqp://user:***@host/``; each URL of a
    ``;``-joined list likewise; a URL without a password unchanged."""
    return redacted(url)


def redacted(text: str) -> str:
    """``text`` with the password of every URL in it masked."""
    return _CREDENTIALS.sub(lambda match: f"{match['head']}{MASK}@", text)
