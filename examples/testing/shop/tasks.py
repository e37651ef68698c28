"""A shop's tasks, as docs/testing.md tests them: an email with retries, and a little canvas."""

from __future__ import annotations

import rabbitq

app = rabbitq.App("shop", default_queue="shop")


class MailerDown(Exception):
    """The mail gateway did not answer: worth trying again later."""


class Mailer:
    """The real gateway (tests put a fake in its place)."""

    def send(self, to: str, subject: str) -> None:
        raise MailerDown("no mail gateway is configured in this example")


mailer = Mailer()


@app.task(autoretry_for=(MailerDown,), max_retries=5, retry_backoff=True)
def send_welcome(address: str) -> str:
    """Retried with backoff (1 s, 2 s, 4 s, ...) while the gateway is down."""
    mailer.send(address, "Welcome!")
    return address


@app.task
def order_total(prices: list[float]) -> float:
    return round(sum(prices), 2)


@app.task
def with_tax(total: float, rate: float = 0.2) -> float:
    return round(total * (1 + rate), 2)


@app.task
def grand_total(totals: list[float]) -> float:
    return with_tax(sum(totals))  # calling a task runs it here, as a plain function


def invoice(orders: list[list[float]]) -> rabbitq.AsyncResult[float]:
    """Every order's total at once (a chord), then their sum with tax."""
    return rabbitq.chord([order_total.s(prices) for prices in orders], grand_total.s())()
