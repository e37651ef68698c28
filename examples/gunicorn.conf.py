"""gunicorn settings for a web app that publishes rabbitq tasks (``gunicorn -c FILE app``).

rabbitq is fork-safe, so ``preload_app`` needs no hook: each publisher remembers the process
that opened it (``os.getpid()``), and a forked worker that publishes gets a connection and I/O
thread of its own; the master's are never used across the fork, even if the master already
published while loading the app. No ``post_fork`` hook, no ``app.close()`` before forking.

    gunicorn -c examples/gunicorn.conf.py shop_site.wsgi                 # Django, sync workers
    gunicorn -c examples/gunicorn.conf.py -k uvicorn_worker.UvicornWorker \\
        examples.fastapi.shop_api:api                                    # FastAPI (ASGI)
"""

import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))

# Load the app once in the master, then fork: faster starts and shared memory. Safe with
# rabbitq (see above).
preload_app = True

# Sync workers handle one request at a time: delay() waits for the broker's confirm, so a
# request that publishes takes a round trip to RabbitMQ longer. gthread workers overlap them;
# every thread of a process shares the process's one publisher connection.
worker_class = "gthread"
threads = 4

# A worker recycled by max_requests closes its publisher at exit (in-flight confirms awaited,
# at most 2 s), like any process that ends normally.
max_requests = 1000
max_requests_jitter = 100
graceful_timeout = 30
