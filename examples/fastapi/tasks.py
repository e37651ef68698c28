"""The API's tasks, in a module of their own: the worker imports this, not the web app.

rabbitq worker -A examples.fastapi.tasks -Q signups
"""

from __future__ import annotations

import asyncio
import os

import rabbitq

app = rabbitq.App("shop_api")  # broker from $RABBITQ_BROKER_URL


@app.task(queue="signups")
async def send_welcome(email: str) -> None:
    await asyncio.sleep(0)  # stands for an email API call
    # The example's "mail server": one line per message, in $SHOP_OUTBOX.
    with open(os.environ.get("SHOP_OUTBOX", "outbox.txt"), "a") as outbox:
        outbox.write(f"welcome {email}\n")
