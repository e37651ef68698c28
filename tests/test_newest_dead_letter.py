"""The worker's newest-dead-letter record (``worker/newest_dead_letter.py``)."""

from __future__ import annotations

import json
import logging

import pytest

from rabbitq.errors import PublishTimeoutError, UnroutableError
from rabbitq.message import Envelope
from rabbitq.middleware.middleware import DeadLettered
from rabbitq.worker.newest_dead_letter import NewestDeadLetterRecord
from tests.pipeline_support import delivery_of, task_envelope

Sent = list[tuple[str, Envelope, float]]


def dead_letter(error: BaseException) -> DeadLettered:
    delivery = delivery_of(task_envelope("mail.send", id="id-7"), queue="emails")
    return DeadLettered(delivery, "task-failed", error, "emails.dead")


async def test_after_a_dead_letter_its_reason_task_and_error_go_to_the_record_queue() -> None:
    sent: Sent = []

    async def publish(key: str, envelope: Envelope, timeout: float) -> None:
        sent.append((key, envelope, timeout))

    await NewestDeadLetterRecord(publish).after_dead_letter(dead_letter(ValueError("bad")))
    [(key, envelope, _timeout)] = sent
    record = json.loads(envelope.body)
    assert key == "emails.dead.newest"
    assert (record["id"], record["task"], record["reason"]) == ("id-7", "mail.send", "task-failed")
    assert record["exception"] == "ValueError: bad" and record["dead_at"]


@pytest.mark.parametrize(
    "refusal", [UnroutableError("no record queue"), PublishTimeoutError("blocked"), OSError()]
)
async def test_a_record_that_cannot_be_written_is_logged_and_left_out(
    refusal: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    async def publish(_key: str, _envelope: Envelope, _timeout: float) -> None:
        raise refusal

    caplog.set_level(logging.DEBUG, "rabbitq.worker")
    await NewestDeadLetterRecord(publish).after_dead_letter(dead_letter(ValueError("bad")))
    assert "newest dead letter of emails.dead not recorded" in caplog.text
