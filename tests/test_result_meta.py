"""Result documents in Celery's shape, and where results wait for their caller."""

from __future__ import annotations

import threading

from rabbitq.results import meta
from rabbitq.results.replies import ReplyBox
from rabbitq.serializers import serializer_named


def test_a_failure_describes_the_exception_as_celery_does() -> None:
    document = meta.failure("id1", ValueError("boom", 3)).to_document()
    assert document["status"] == "FAILURE"
    assert document["result"] == {
        "exc_type": "ValueError",
        "exc_message": ["boom", 3],
        "exc_module": "builtins",
    }
    assert "ValueError: ('boom', 3)" in document["traceback"]


def test_a_failure_turns_back_into_a_task_error() -> None:
    error = meta.failure("id1", KeyError("k"), "trace").error()
    assert (error.exc_type, error.exc_message, error.traceback) == ("KeyError", "k", "trace")
    assert error.task_id == "id1"


def test_a_result_the_serializer_cannot_hold_is_stored_as_a_failure() -> None:
    serializer = serializer_named("json")
    stored = serializer.loads(meta.encode_meta(meta.success("id2", object()), serializer))
    assert stored["status"] == "FAILURE"
    assert stored["result"]["exc_type"] == "ResultEncodeError"


def test_the_document_round_trips() -> None:
    original = meta.success("id3", [1, 2])
    assert meta.decode_meta(original.to_document()) == original


def test_a_late_started_state_never_hides_a_final_one() -> None:
    box = ReplyBox()
    box.put(meta.success("a", 1))
    box.put(meta.state_only("a", meta.STARTED))
    kept = box.get("a")
    assert kept is not None and kept.status == "SUCCESS"


def test_waiting_wakes_when_the_reply_arrives() -> None:
    box = ReplyBox()
    threading.Timer(0.05, lambda: box.put(meta.success("b", 2))).start()
    assert box.wait(["b"], timeout=10)["b"].result == 2


def test_waiting_returns_what_is_ready_at_the_deadline() -> None:
    box = ReplyBox()
    box.put(meta.success("c", 3))
    assert set(box.wait(["c", "d"], timeout=0.05)) == {"c"}


def test_unread_results_are_bounded() -> None:
    box = ReplyBox(keep_at_most=2)
    for name in "xyz":
        box.put(meta.success(name, 0))
    assert box.get("x") is None and box.get("z") is not None
