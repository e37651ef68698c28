"""Prometheus metrics: the worker's own (``worker_metrics.py``, served by ``endpoint.py``)
and the system's queue-level gauges (``queue_gauges.py``, served by ``rabbitq exporter`` or
the dashboard). ``docs/metrics.md`` lists every metric.

Every module here needs prometheus-client, the ``rabbitq[metrics]`` extra. Importing any of
them without it raises ``MissingExtraError`` naming the extra: the check is made here, in
the package every one of them imports first. It only looks the client up; importing it
waits for the modules that use it (``prometheus.py``), after ``endpoint.py`` has set the
multiprocess directory.
"""

from __future__ import annotations

from rabbitq.extras import require

require("metrics", feature="rabbitq.metrics")
