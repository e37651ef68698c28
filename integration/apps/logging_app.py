"""Tasks that log through user code's own logger (integration/test_task_logs.py)."""

from __future__ import annotations

import logging
import os

import rabbitq

# Broker from $RABBITQ_BROKER_URL; the log format the App asks for, when a test sets one.
app = rabbitq.App("task-logs", log_format=os.environ.get("RABBITQ_TEST_LOG_FORMAT", "plain"))
log = logging.getLogger("shop.orders")  # not a rabbitq logger: the user's own


@app.task(name="logs.say")
def say(word: str) -> str:
    log.info("saying %s", word)
    return word


@app.task(name="logs.asay")
async def asay(word: str) -> str:
    log.info("saying %s", word)
    return word


@app.task(name="logs.flaky", bind=True)
def flaky(self: rabbitq.Task[..., str], word: str) -> str:
    request = self.request
    assert request is not None
    log.info("attempt %d of %s", request.retries, word)
    if request.retries == 0:
        raise self.retry(countdown=0.1)
    return word


@app.task(name="logs.spawn", bind=True)
def spawn(self: rabbitq.Task[..., None], word: str) -> None:
    request = self.request
    assert request is not None
    log.info("spawning %s", word)
    say.apply_async((word,), countdown=0.1, queue=request.queue)
