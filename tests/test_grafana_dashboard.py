"""``docs/grafana-dashboard.json`` is a Grafana dashboard whose queries name only metrics
rabbitq serves (a renamed metric would leave its panel empty without a word)."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import prometheus_client

from rabbitq.metrics.queue_gauges import QueueGauges
from rabbitq.metrics.worker_metrics import WorkerMetricSet
from tests.test_queue_gauges import SNAPSHOT

DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana-dashboard.json"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def served_names() -> set[str]:
    """Every sample name the worker and the exporter serve."""
    registry = prometheus_client.CollectorRegistry()
    WorkerMetricSet(registry)
    assert SNAPSHOT.chords is not None
    everything = dataclasses.replace(
        SNAPSHOT, chords=dataclasses.replace(SNAPSHOT.chords, in_flight=1)
    )
    registry.register(QueueGauges(lambda: everything))
    return {
        family.name + suffix for family in registry.collect() for suffix in SUFFIXES[family.type]
    }


def dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return document


def queries() -> Iterator[str]:
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", ()):
            yield target["expr"]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            yield variable["definition"]


def test_the_dashboard_is_a_grafana_10_dashboard_of_panels_with_queries() -> None:
    document = dashboard()
    assert document["schemaVersion"] >= 36 and document["uid"] and document["title"]
    panels = [panel for panel in document["panels"] if panel["type"] != "row"]
    assert panels and all(panel["targets"] and panel["gridPos"] for panel in panels)
    assert len({panel["id"] for panel in document["panels"]}) == len(document["panels"])


def test_every_query_names_only_metrics_rabbitq_serves() -> None:
    served = served_names()
    for expr in queries():
        named = set(re.findall(r"\brabbitq_[a-z_]+", expr))
        assert named, expr
        assert named <= served, f"{expr}: {sorted(named - served)} not served"


def test_every_metric_rabbitq_serves_is_on_the_dashboard_or_known_to_be_left_off() -> None:
    on_the_dashboard = {
        name for expr in queries() for name in re.findall(r"\brabbitq_[a-z_]+", expr)
    }
    # A histogram's _count is drawn through its _bucket and _sum; the rest is in the tables
    # of docs/metrics.md.
    left_off = {
        "rabbitq_status_scrape_seconds",
        "rabbitq_task_queue_wait_seconds_count",
        "rabbitq_task_queue_wait_seconds_sum",
        "rabbitq_worker_prefetch",
        "rabbitq_worker_processed_total",
        "rabbitq_worker_online",
    }
    assert served_names() - on_the_dashboard == left_off


def test_docs_metrics_md_describes_every_metric_rabbitq_serves() -> None:
    text = (DASHBOARD.parent / "metrics.md").read_text()
    documented = set(re.findall(r"`(rabbitq_[a-z_]+)`", text))
    histograms = {name for name in served_names() if name.endswith(("_bucket", "_count", "_sum"))}
    bases = {re.sub(r"_(bucket|count|sum)$", "", name) for name in histograms}
    assert (served_names() - histograms) | bases <= documented
