"""``rabbitq exporter``: the system's queue-level gauges for Prometheus, from one place.

Queue depth, dead letters, delay-level occupancy, workers online (from their heartbeats),
chords and the beat, read from the broker and its management API at every scrape
(``metrics/queue_gauges.py``). Workers serve only what they themselves did
(``rabbitq worker --metrics-port``); run one exporter per broker, not one per worker.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

import click

from rabbitq.amqp.status_collector import StatusCollector
from rabbitq.cli.options import broker_option, loglevel_option, management_url_option
from rabbitq.errors import RabbitqError
from rabbitq.redaction import without_password
from rabbitq.worker.process import configure_logging

DEFAULT_PORT = 9808


@click.command()
@broker_option
@management_url_option
@click.option(
    "--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(1, 65535),
    help="Port to serve /metrics on.",
)  # fmt: skip
@click.option(
    "--bind",
    default="127.0.0.1",
    show_default=True,
    metavar="ADDRESS",
    help="Address to serve on (0.0.0.0: every interface, for a Prometheus on another host).",
)
@click.option("--beat-group", default="", help="The beat group to report (default: the default).")
@loglevel_option
def exporter(
    broker: str, management_url: str | None, port: int, bind: str, beat_group: str, loglevel: str
) -> None:
    """Serve queue depths, dead letters, delay levels, workers online, chords and the beat
    as Prometheus gauges at http://BIND:PORT/metrics (until SIGTERM or Ctrl-C)."""
    configure_logging(loglevel)
    try:
        from rabbitq.metrics.endpoint import serve_registry
        from rabbitq.metrics.prometheus import prometheus_client
        from rabbitq.metrics.queue_gauges import QueueGauges

        collector = StatusCollector(broker, management_url, beat_group=beat_group)
        try:
            registry = prometheus_client.CollectorRegistry()
            registry.register(QueueGauges(collector.collect))
            server, _thread = serve_registry(registry, port, bind)
            click.echo(
                f"rabbitq exporter: {without_password(broker)} at http://{bind}:{port}/metrics",
                err=True,
            )
            try:
                _wait_for_a_stop_signal()
            finally:
                server.shutdown()
                server.server_close()
        finally:
            collector.close()
    except RabbitqError as exc:
        raise click.ClickException(str(exc)) from None


def _wait_for_a_stop_signal() -> None:
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stop.wait(1.0):
        pass
