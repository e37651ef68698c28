"""The dashboard's ``/metrics``: the queue-level gauges of ``rabbitq.metrics.queue_gauges``
(queue depths, dead letters, delay occupancy, workers, chords, beat), from the same status
source as its pages, so a dashboard can stand in for ``rabbitq exporter``.

Served only with prometheus-client installed (``rabbitq[metrics]``); without it ``/metrics``
is a 404 and the rest of the dashboard works. Behind the token like every other path, when
there is one (Prometheus sends it with ``authorization: {credentials: ...}``).
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from rabbitq.dashboard.status_feed import StatusSource
from rabbitq.errors import MissingExtraError


def metrics_routes(status: StatusSource) -> list[BaseRoute]:
    try:
        from rabbitq.metrics.prometheus import prometheus_client
        from rabbitq.metrics.queue_gauges import QueueGauges
    except MissingExtraError:  # no prometheus-client: no /metrics
        return []
    registry = prometheus_client.CollectorRegistry()
    registry.register(QueueGauges(status.collect))

    async def metrics(_request: Request) -> Response:
        # A scrape takes a snapshot (blocking): in a worker thread, like the pages.
        body = await run_in_threadpool(prometheus_client.generate_latest, registry)
        return Response(body, media_type=prometheus_client.CONTENT_TYPE_LATEST)

    return [Route("/metrics", metrics)]
