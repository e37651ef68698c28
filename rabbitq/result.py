"""Deprecated alias, kept for one release: result handles live in ``rabbitq.results.handles``
(``rabbitq.AsyncResult`` and ``rabbitq.GroupResult`` are the public names)."""

from __future__ import annotations

import warnings

from rabbitq.results.handles import AsyncResult, GroupResult

__all__ = ["AsyncResult", "GroupResult"]

warnings.warn(
    "rabbitq.result is now rabbitq.results.handles; import AsyncResult and GroupResult from "
    "rabbitq",
    DeprecationWarning,
    stacklevel=2,
)
