"""A task sent by a running task is its child, as Celery has it: its parent is that task and
its root that task's root (the trace context that the worker's logs carry)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import rabbitq
from rabbitq.message import TaskMessage, decode_task
from rabbitq.prepare import Context
from rabbitq.publish_options import PublishOptions
from rabbitq.request import TaskRequest, current_request

app = rabbitq.App("children")


def _sent(options: PublishOptions | None = None, canvas: Context | None = None) -> TaskMessage:
    return decode_task(app.prepare("t", (), {}, options or PublishOptions(), None, canvas).envelope)


@pytest.fixture
def running() -> Iterator[TaskRequest]:
    request = TaskRequest(id="parent-1", task="p", args=(), kwargs={}, root_id="root-0")
    token = current_request.set(request)
    yield request
    current_request.reset(token)


def test_outside_a_task_a_message_is_its_own_root() -> None:
    message = _sent()
    assert message.parent_id is None and message.root_id == message.id


@pytest.mark.usefixtures("running")
def test_inside_a_task_a_message_is_its_child() -> None:
    message = _sent()
    assert (message.parent_id, message.root_id) == ("parent-1", "root-0")


def test_the_first_task_of_a_workflow_is_its_childrens_root() -> None:
    token = current_request.set(TaskRequest(id="first", task="p", args=(), kwargs={}))
    try:
        message = _sent()
    finally:
        current_request.reset(token)
    assert (message.parent_id, message.root_id) == ("first", "first")


@pytest.mark.usefixtures("running")
def test_ids_given_by_the_caller_or_the_workflow_win() -> None:
    assert _sent(PublishOptions(parent_id="mine", root_id="r")).parent_id == "mine"
    step = _sent(canvas=Context(parent_id="step-1", root_id="wf-root"))
    assert (step.parent_id, step.root_id) == ("step-1", "wf-root")
