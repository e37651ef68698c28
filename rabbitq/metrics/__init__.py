"""Prometheus metrics: the worker's own (``worker_metrics.py``, served by ``endpoint.py``)
and the system's queue-level gauges (``queue_gauges.py``, served by ``rabbitq exporter`` or
the dashboard). ``docs/metrics.md`` lists every metric.

Importing this package costs nothing; its modules need prometheus-client, the
``rabbitq[metrics]`` extra, and say so when it is missing (``prometheus.py``).
"""
