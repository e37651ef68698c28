"""A small shop: e-mails on one queue, reports on another. Used by scripts/demo.sh.

rabbitq worker -A examples.shop -Q emails,reports
"""

from __future__ import annotations

import asyncio
import sys

import rabbitq

app = rabbitq.App("shop", result_backend="rpc://")  # broker from $RABBITQ_BROKER_URL


def _say(line: str) -> None:
    # One write per line: tasks run in several threads, and print() writes the newline apart.
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@app.task(queue="emails")
def send_welcome(user_id: int, email: str) -> str:
    line = f"[emails] welcome e-mail sent to user {user_id} <{email}>"
    _say(line)
    return line


@app.task(routing_key="emails.receipts")
async def send_receipt(order_id: int, total: float) -> str:
    await asyncio.sleep(0.05)  # an async task runs on the worker's event loop
    line = f"[emails] receipt for order {order_id}: {total:.2f} EUR"
    _say(line)
    return line


@app.task(queue="reports")
def build_report(month: str, rows: int) -> str:
    line = f"[reports] built the {month} report ({rows} rows)"
    _say(line)
    return line


@app.task(queue="reports")
def broken_report(month: str) -> None:
    raise RuntimeError(f"the {month} data is missing")


@app.task(queue="reports")
def with_vat(net: float) -> float:
    return round(net * 1.2, 2)


@app.task(queue="reports")
def invoice_total(amounts: list[float]) -> float:
    """A chord body: receives every member's result, in order."""
    return round(sum(amounts), 2)
