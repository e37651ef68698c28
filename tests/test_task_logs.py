"""Log records say which task wrote them (``rabbitq.task_logs``)."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest

import rabbitq
from rabbitq.errors import ConfigurationError
from rabbitq.request import TaskRequest, current_request
from rabbitq.task_logs import (
    JsonLogFormatter,
    TaskLogFilter,
    check_log_format,
    task_log_handler,
)

REQUEST = TaskRequest(
    id="t-1",
    task="shop.send_email",
    args=(),
    kwargs={},
    retries=2,
    root_id="r-0",
    parent_id="p-0",
    queue="emails",
)


def _record(message: str = "hello", exc_info: object = None) -> logging.LogRecord:
    return logging.LogRecord("shop", logging.INFO, __file__, 1, message, (), exc_info)  # type: ignore[arg-type]


def _in_task(record: logging.LogRecord, request: TaskRequest | None = REQUEST) -> None:
    token = current_request.set(request)
    try:
        TaskLogFilter().filter(record)
    finally:
        current_request.reset(token)


def test_a_record_written_in_a_task_carries_its_fields() -> None:
    record = _record()
    _in_task(record)
    assert (record.task_id, record.task_name, record.task_queue, record.task_retries) == (
        "t-1",
        "shop.send_email",
        "emails",
        2,
    )
    assert (record.task_root_id, record.task_parent_id) == ("r-0", "p-0")


def test_a_first_task_is_its_own_root() -> None:
    record = _record()
    _in_task(record, TaskRequest(id="t-1", task="t", args=(), kwargs={}))
    assert record.task_root_id == "t-1"


def test_a_record_outside_a_task_has_empty_fields() -> None:
    record = _record()
    _in_task(record, None)
    assert record.task_id is None and record.task == ""


def test_the_filter_never_drops_a_record() -> None:
    assert TaskLogFilter().filter(_record()) is True


def test_the_json_format_writes_one_object_with_the_task_fields() -> None:
    record = _record("sent %d")
    record.args = (3,)
    _in_task(record)
    document = json.loads(JsonLogFormatter().format(record))
    assert document["message"] == "sent 3" and document["level"] == "INFO"
    assert document["logger"] == "shop" and document["task_id"] == "t-1"
    assert document["task_root_id"] == "r-0"


def test_the_json_format_leaves_out_task_fields_outside_a_task() -> None:
    record = _record()
    _in_task(record, None)
    assert "task_id" not in json.loads(JsonLogFormatter().format(record))


def test_the_json_format_carries_the_exception() -> None:
    try:
        raise KeyError("sku-9")
    except KeyError:
        record = _record("failed", exc_info=sys.exc_info())
    _in_task(record)
    assert "KeyError: 'sku-9'" in json.loads(JsonLogFormatter().format(record))["exception"]


def test_the_plain_format_names_the_task_before_the_message() -> None:
    stream = io.StringIO()
    handler = task_log_handler(stream, "plain")
    token = current_request.set(REQUEST)
    try:
        handler.handle(_record("charged"))
    finally:
        current_request.reset(token)
    assert "shop: shop.send_email[t-1]: charged" in stream.getvalue()


def test_the_plain_format_leaves_rabbitqs_own_lines_as_they_are() -> None:
    stream = io.StringIO()
    handler = task_log_handler(stream, "plain")
    record = logging.LogRecord("rabbitq.worker", logging.INFO, __file__, 1, "done", (), None)
    token = current_request.set(REQUEST)
    try:
        handler.handle(record)
    finally:
        current_request.reset(token)
    assert "rabbitq.worker: done" in stream.getvalue()


def test_an_unknown_log_format_is_refused_with_the_choices() -> None:
    with pytest.raises(ConfigurationError, match="plain, json"):
        check_log_format("xml")


def test_an_app_with_an_unknown_log_format_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="unknown log format 'xml'"):
        rabbitq.App("logs", log_format="xml")
