"""``rabbitq dashboard``: a small web app (Starlette on uvicorn, Jinja2 pages) showing what
``rabbitq status`` shows, live, and looking after dead letters.

One module per job:

    config.py            what the dashboard was started with; the bind rule (pure)
    sessions.py          the signed session cookie and the CSRF token derived from it (pure)
    auth.py              the token gate, the cross-site refusal, the CSRF check
    security_headers.py  the headers on every response (CSP, no framing, nosniff)
    path_segments.py     a queue name or task id, "/" included, as one path segment
    status_feed.py       where snapshots come from (StatusCollector, in a thread)
    dead_queues.py       dead-queue reads and actions, blocking, one at a time
    overview.py          the overview page and ``/api/status``
    dead_pages.py        dead letters: list, show, replay, purge (confirmed)
    login.py             /login and /logout, when there is a token
    pages.py             rendering a template with what every page needs
    metrics.py           /metrics: the queue-level Prometheus gauges
    web_stack.py         the check that the extra is installed (app.py imports it first)
    app.py               the app factory that wires them together

Importing this package imports nothing: Starlette, Jinja2 and uvicorn come with the
``rabbitq[dashboard]`` extra and are imported by the modules that need them. Importing
``rabbitq.dashboard.app`` without them raises ``MissingExtraError`` naming the extra.
"""
