"""amqps:// end to end on a broker with a TLS listener of its own (``LocalBroker(tls=True)``,
certificates by trustme): the publisher (pika), the worker (aio-pika), the asyncio publisher,
rpc results, a beat and ``rabbitq status`` over HTTPS, and the errors when trust is missing."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import rabbitq
from integration.beat_support import BeatProcess, TickRecorder, every_second_schedule
from integration.support import WorkerProcess, ran_labels, running_worker, wait_for
from rabbitq.errors import BrokerTlsError, ConfigurationError, PublishConnectionError
from rabbitq.testing import LocalBroker, Worker

# Nodes of its own (3.10): skipped in the RabbitMQ 4.0 pass (conftest.py).
pytestmark = pytest.mark.own_broker

TIMEOUT = 30.0


@pytest.fixture(scope="module")
def tls_broker() -> Iterator[LocalBroker]:
    with LocalBroker(tls=True, management=True) as broker:
        yield broker


@pytest.fixture(scope="module")
def client_certificate_broker() -> Iterator[LocalBroker]:
    with LocalBroker(tls=True, tls_require_client_certificate=True) as broker:
        yield broker


def untrusting_url(broker: LocalBroker) -> str:
    """amqps:// to ``broker`` trusting only the system's CAs, which never signed its
    certificate."""
    return f"amqps://guest:guest@localhost:{broker.tls_port}/"


def test_a_task_published_over_amqps_runs_on_a_tls_worker_and_its_rpc_result_returns(
    tls_broker: LocalBroker, unique_name: str
) -> None:
    app = rabbitq.App(
        "tls", broker=tls_broker.tls_url, default_queue=unique_name, result_backend="rpc://"
    )

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    try:
        with Worker(app, [unique_name]):
            assert add.delay(2, 3).get(timeout=TIMEOUT) == 5
    finally:
        app.close()


def test_broker_use_ssl_turns_an_amqp_url_into_tls_with_its_ca(
    tls_broker: LocalBroker, unique_name: str
) -> None:
    app = rabbitq.App(
        "tls",
        broker=f"amqp://guest:guest@localhost:{tls_broker.tls_port}/",
        broker_use_ssl={"ca_certs": str(tls_broker.certificates.ca)},
        default_queue=unique_name,
    )
    ran: list[str] = []

    @app.task
    def remember(label: str) -> None:
        ran.append(label)

    try:
        assert app.broker_url.startswith("amqps://")
        with Worker(app, [unique_name]) as worker:
            remember.delay("over tls")
            worker.join()
        assert ran == ["over tls"]
    finally:
        app.close()


def test_an_asyncio_publisher_publishes_over_amqps(
    tls_broker: LocalBroker, unique_name: str
) -> None:
    app = rabbitq.App("tls", broker=tls_broker.tls_url, default_queue=unique_name)
    ran: list[str] = []

    @app.task
    def remember(label: str) -> None:
        ran.append(label)

    async def publish() -> None:
        await remember.adelay("from asyncio")
        await app.aclose()

    try:
        with Worker(app, [unique_name]) as worker:
            asyncio.run(publish())
            worker.join()
        assert ran == ["from asyncio"]
    finally:
        app.close()


def test_a_worker_process_runs_what_a_tls_publisher_sends_and_logs_no_password(
    tls_broker: LocalBroker, unique_name: str, tmp_path: Path
) -> None:
    app = rabbitq.App("tls", broker=tls_broker.tls_url)
    try:
        with running_worker(tls_broker.tls_url, unique_name, tmp_path) as worker:
            app.send_task("it.record", ("over tls",), queue=unique_name)
            wait_for(lambda: ran_labels(tmp_path / "ran.txt") == ["over tls"], TIMEOUT, worker.log)
            assert ":guest@" not in worker.log()
    finally:
        app.close()


def test_a_beat_over_amqps_sends_its_ticks(
    tls_broker: LocalBroker, unique_name: str, tmp_path: Path
) -> None:
    rabbitq.App(broker=tls_broker.url).ensure_queue(unique_name)
    schedule = every_second_schedule(tmp_path / "schedule.yaml", unique_name)
    recorder = TickRecorder(tls_broker.tls_url, unique_name)
    beat = BeatProcess(tls_broker.tls_url, schedule, unique_name, tmp_path / "beat.log")
    try:
        wait_for(lambda: len(recorder.ticks) >= 2, TIMEOUT, beat.log)
    finally:
        beat.stop()
        recorder.stop()


def test_status_reads_the_management_api_over_https_with_the_broker_s_ca(
    tls_broker: LocalBroker,
) -> None:
    assert tls_broker.tls_management_url is not None
    done = subprocess.run(
        [sys.executable, "-m", "rabbitq", "status", "--broker", tls_broker.tls_url,
         "--management-url", tls_broker.tls_management_url, "--json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert ":guest@" not in done.stdout + done.stderr


def test_status_refuses_a_plain_http_management_url_for_an_amqps_broker(
    tls_broker: LocalBroker,
) -> None:
    assert tls_broker.management_url is not None
    done = subprocess.run(
        [sys.executable, "-m", "rabbitq", "status", "--broker", tls_broker.tls_url,
         "--management-url", tls_broker.management_url],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    assert "plain HTTP but the broker is reached over TLS" in done.stderr
    assert ":guest@" not in done.stdout + done.stderr


def test_a_publisher_that_does_not_trust_the_broker_s_certificate_says_so_and_sends_nothing(
    tls_broker: LocalBroker, unique_name: str
) -> None:
    app = rabbitq.App("tls", broker=untrusting_url(tls_broker), publish_timeout=5)
    try:
        # Raised at once: a declaration (or a publish) does not wait out its timeout for a
        # certificate to mend.
        with pytest.raises(
            (BrokerTlsError, PublishConnectionError), match="certificate is not trusted"
        ):
            app.send_task("it.record", ("never",), queue=unique_name)
    finally:
        app.close()


def test_a_worker_that_does_not_trust_the_broker_s_certificate_exits_saying_why(
    tls_broker: LocalBroker, unique_name: str, tmp_path: Path
) -> None:
    worker = WorkerProcess(
        untrusting_url(tls_broker), unique_name, tmp_path / "ran.txt", tmp_path / "worker.log"
    )
    try:
        worker.process.wait(TIMEOUT)
    finally:
        code = worker.stop()
    assert code != 0
    assert "certificate is not trusted" in worker.log()
    assert ":guest@" not in worker.log()


def test_a_broker_that_requires_a_client_certificate_refuses_a_client_without_one(
    client_certificate_broker: LocalBroker,
) -> None:
    from rabbitq.amqp.connection_parameters import open_blocking

    with pytest.raises(BrokerTlsError, match="client certificate"):
        open_blocking(client_certificate_broker.tls_url, "the test")


def test_a_client_certificate_from_broker_use_ssl_is_presented_and_accepted(
    client_certificate_broker: LocalBroker, unique_name: str
) -> None:
    files = client_certificate_broker.certificates
    app = rabbitq.App(
        "tls",
        broker=f"amqps://guest:guest@localhost:{client_certificate_broker.tls_port}/",
        broker_use_ssl={
            "ca_certs": str(files.ca),
            "certfile": str(files.client_cert),
            "keyfile": str(files.client_key),
        },
        default_queue=unique_name,
    )
    ran: list[int] = []

    @app.task
    def remember(n: int) -> None:
        ran.append(n)

    try:
        with Worker(app, [unique_name]) as worker:
            remember.delay(1)
            worker.join()
        assert ran == [1]
    finally:
        app.close()


def test_a_missing_certificate_file_is_a_configuration_error_naming_it(
    tls_broker: LocalBroker, tmp_path: Path
) -> None:
    from rabbitq.amqp.connection_parameters import open_blocking

    missing = tmp_path / "nowhere.pem"
    app = rabbitq.App(
        broker=f"amqps://guest:guest@localhost:{tls_broker.tls_port}/",
        broker_use_ssl={"ca_certs": str(missing)},
    )
    with pytest.raises(ConfigurationError, match=r"nowhere\.pem"):
        open_blocking(app.broker_url, "the test")


def test_results_are_stored_and_read_over_rediss(tls_broker: LocalBroker, unique_name: str) -> None:
    from rabbitq.testing import LocalRedis

    with LocalRedis(tls=True) as redis:
        assert redis.url.startswith("rediss://")
        app = rabbitq.App(
            "tls", broker=tls_broker.tls_url, default_queue=unique_name, result_backend=redis.url
        )

        @app.task
        def add(x: int, y: int) -> int:
            return x + y

        try:
            with Worker(app, [unique_name]):
                assert add.delay(20, 22).get(timeout=TIMEOUT) == 42
        finally:
            app.close()
