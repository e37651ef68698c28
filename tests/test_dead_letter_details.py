"""What ``rabbitq dead show`` and the dashboard show of a dead letter, and which a replay takes."""

from __future__ import annotations

from rabbitq.dead_letter_details import DeadLetterDetails, ReplaySelection
from rabbitq.dead_letters import DeadLetterSummary, dead_letter_envelope
from rabbitq.message import Envelope, TaskMessage, encode_task
from rabbitq.serializers import MSGPACK


def _dead(envelope: Envelope) -> Envelope:
    try:
        raise FileNotFoundError("/tmp/fixed")
    except FileNotFoundError as exc:
        return dead_letter_envelope(
            envelope, reason="task-failed", queue="emails", routing_key="emails",
            exchange="rabbitq", exception=exc, attempts=1,
        )  # fmt: skip


def test_details_show_arguments_headers_and_the_traceback_apart() -> None:
    envelope = _dead(
        encode_task(TaskMessage("it.needs_file", [0, "/tmp/fixed"], {"a": 1}), MSGPACK)
    )
    details = DeadLetterDetails.of(envelope)
    assert details.args == "[0, '/tmp/fixed']" and details.kwargs == "{'a': 1}"
    assert details.body_problem is None
    assert details.traceback is not None and "FileNotFoundError" in details.traceback
    names = [name for name, _value in details.headers]
    assert names == sorted(names) and "rabbitq_traceback" not in names
    assert ("rabbitq_reason", "task-failed") in details.headers
    assert details.summary.task == "it.needs_file"


def test_an_undecodable_body_is_previewed_with_the_reason() -> None:
    details = DeadLetterDetails.of(_dead(Envelope(body=b"\xff\x00junk", headers={"task": "t"})))
    assert details.args is None and details.kwargs is None
    assert details.body_problem is not None and details.body_problem.startswith("b'\\xff")


def _summary(task_id: str, task: str) -> DeadLetterSummary:
    return DeadLetterSummary(task_id, task, "task-failed", "", 1, "", "emails", "emails")


def test_a_selection_by_id_takes_only_those_ids() -> None:
    selection = ReplaySelection(frozenset({"a"}))
    assert selection.takes(_summary("a", "t")) and not selection.takes(_summary("b", "t"))
    assert not selection.everything and not selection.is_empty


def test_a_selection_by_task_and_id_needs_both() -> None:
    selection = ReplaySelection(frozenset({"a"}), task="t")
    assert selection.takes(_summary("a", "t"))
    assert not selection.takes(_summary("a", "u"))


def test_all_alone_is_everything_and_needs_no_browsing() -> None:
    assert ReplaySelection(all=True).everything
    assert not ReplaySelection(all=True, task="t").everything
    assert ReplaySelection().is_empty
