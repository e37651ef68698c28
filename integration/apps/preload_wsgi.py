"""A tiny WSGI app for the gunicorn --preload spec: it publishes while gunicorn's master loads
it (opening the master's publisher before the fork), then once per request from the workers.

Each request's answer is the serving process's pid; the task records "<label> <pid>".
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from integration.apps.core_app import record

QUEUE = os.environ["PRELOAD_TEST_QUEUE"]

record.apply_async((f"preloaded-{os.getpid()}",), queue=QUEUE)  # in the master, before forking


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ["PATH_INFO"] == "/publish":
        record.apply_async((f"request-{os.getpid()}",), queue=QUEUE)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]
