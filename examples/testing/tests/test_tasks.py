"""The shop's tasks, tested three ways: on the in-memory broker with a worker, eagerly, and
on a real RabbitMQ. The first two need nothing installed; the last is marked ``rabbitmq``."""

from __future__ import annotations

from typing import Any

import pytest
from shop.tasks import invoice, order_total, send_welcome, with_tax

from rabbitq import chain
from rabbitq.testing import StubBroker, StubWorker, Worker


def test_a_welcome_email_is_sent(rabbitq_stub_worker: StubWorker, mailer: Any) -> None:
    fake = mailer()
    send_welcome.delay("ada@example.com")
    rabbitq_stub_worker.join()
    assert fake.sent == [("ada@example.com", "Welcome!")]


def test_a_gateway_outage_is_retried_until_it_recovers(
    rabbitq_stub_worker: StubWorker, mailer: Any
) -> None:
    fake = mailer(down_for=3)
    result = send_welcome.delay("ada@example.com")
    rabbitq_stub_worker.join()  # the backoff (1 + 2 + 4 s) passes on the stub's clock
    assert result.get(timeout=1) == "ada@example.com"
    assert fake.calls == 4


def test_a_gateway_that_stays_down_ends_in_the_dead_letter_queue(
    rabbitq_stub: StubBroker, rabbitq_stub_worker: StubWorker, mailer: Any
) -> None:
    mailer(down_for=100)
    send_welcome.delay("ada@example.com")
    rabbitq_stub_worker.join()
    [dead] = rabbitq_stub.dead_letters("shop")
    assert dead.headers["rabbitq_reason"] == "retries-exhausted"
    assert dead.headers["rabbitq_attempts"] == 6


def test_a_countdown_waits_until_the_clock_gets_there(
    rabbitq_stub: StubBroker, rabbitq_stub_worker: StubWorker, mailer: Any
) -> None:
    fake = mailer()
    send_welcome.apply_async(("ada@example.com",), countdown=3600)
    rabbitq_stub_worker.join(advance_clock=False)
    assert fake.sent == []
    rabbitq_stub.advance(3600)
    rabbitq_stub_worker.join()
    assert len(fake.sent) == 1


def test_an_order_s_total_with_tax(rabbitq_eager: StubBroker) -> None:
    assert (order_total.s([10.0, 2.5]) | with_tax.s())().get(timeout=1) == 15.0


def test_an_invoice_sums_its_orders_in_a_chord(rabbitq_eager: StubBroker) -> None:
    assert invoice([[10.0], [5.0, 5.0]]).get(timeout=5) == 24.0


@pytest.mark.rabbitmq
def test_the_same_chain_on_a_real_rabbitmq(rabbitq_worker: Worker) -> None:
    result = chain(order_total.s([10.0, 2.5]), with_tax.s()).delay()
    assert result.get(timeout=30) == 15.0


@pytest.mark.rabbitmq
def test_a_welcome_email_on_a_real_rabbitmq(rabbitq_worker: Worker, mailer: Any) -> None:
    fake = mailer()
    send_welcome.delay("ada@example.com")
    rabbitq_worker.join()
    assert fake.sent == [("ada@example.com", "Welcome!")]
