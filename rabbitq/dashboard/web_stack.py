"""Importing this raises ``MissingExtraError`` unless the dashboard's web stack (Starlette,
uvicorn, Jinja2, python-multipart: the ``rabbitq[dashboard]`` extra) is installed.

``app.py`` imports it before anything of Starlette's. The check is not in the package's
``__init__``: ``config.py`` and ``sessions.py`` are pure, and ``rabbitq dashboard`` reads its
options with them before it knows whether the extra is there.
"""

from __future__ import annotations

from rabbitq.extras import require

require("dashboard", feature="rabbitq.dashboard")
