"""A broker that blocks publishers (memory alarm) makes delay() raise in time, not hang."""

from __future__ import annotations

import pytest

import rabbitq
from rabbitq.testing import LocalBroker


@pytest.mark.slow
def test_publish_while_the_broker_blocks_publishers_raises_naming_the_block(
    restartable_broker: LocalBroker, unique_name: str
) -> None:
    app = rabbitq.App("blocked", broker=restartable_broker.url, publish_timeout=3.0)
    task = app.task(name="blocked.t", queue=unique_name)(lambda: None)
    task.delay()  # connected, queue declared
    restartable_broker.rabbitmqctl("set_vm_memory_high_watermark", "0.000001")
    try:
        with pytest.raises(rabbitq.PublishTimeoutError, match="blocked"):
            task.delay()
    finally:
        restartable_broker.rabbitmqctl("set_vm_memory_high_watermark", "0.4")
    task.delay()  # unblocked: publishing works again on the same connection
    app.close()
