"""Compiling workflows into messages (no broker): what each message carries."""

from __future__ import annotations

from typing import Any

import pytest

import rabbitq
from rabbitq.canvas import CHORD_OPTION, Chord
from rabbitq.compile import compile_signature
from rabbitq.message import decode_task
from rabbitq.prepare import Context

app = rabbitq.App("canvas-unit", "amqp://unused/")


@app.task(name="u.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="u.tsum")
def tsum(values: list[int]) -> int:
    return sum(values)


def compiled(sig: rabbitq.Signature, reply_to: str | None = None) -> list[Any]:
    result = compile_signature(sig, Context(reply_to=reply_to), app.prepare_signature)
    return [decode_task(message.envelope) for message in result.messages]


def test_a_signature_prepends_partial_arguments() -> None:
    (message,) = compiled(add.s(2).clone((1,)))
    assert message.args == [1, 2]


def test_an_immutable_signature_ignores_partial_arguments() -> None:
    (message,) = compiled(add.si(2, 3).clone((1,)))
    assert message.args == [2, 3]


def test_a_chain_publishes_its_first_step_carrying_the_rest_next_step_last() -> None:
    (message,) = compiled(add.s(1, 1) | add.s(2) | add.s(3))
    assert message.task == "u.add" and message.args == [1, 1]
    assert message.chain is not None
    assert [step["args"] for step in message.chain] == [[3], [2]]


def test_the_chain_result_is_its_last_steps_id() -> None:
    workflow = add.s(1, 1) | add.s(2)
    result = compile_signature(workflow, Context(), app.prepare_signature).result
    (message,) = [
        decode_task(m.envelope)
        for m in compile_signature(workflow, Context(), app.prepare_signature).messages
    ]
    assert message.chain is not None
    assert result.id == message.chain[-1]["options"]["task_id"]


def test_a_group_publishes_every_member_with_its_group_and_index() -> None:
    messages = compiled(rabbitq.group(add.s(i, i) for i in range(3)))
    assert [m.args for m in messages] == [[0, 0], [1, 1], [2, 2]]
    assert len({m.group for m in messages}) == 1
    assert [m.group_index for m in messages] == [0, 1, 2]


def test_chord_members_carry_the_chord_and_their_index() -> None:
    messages = compiled(rabbitq.chord([add.s(1, 1), add.s(2, 2)], tsum.s()))
    members = [m.embed_extras[CHORD_OPTION] for m in messages]
    assert [m["index"] for m in members] == [0, 1]
    assert {m["size"] for m in members} == {2}
    assert members[0]["body"]["task"] == "u.tsum"


def test_a_chain_as_chord_member_reports_from_its_last_step() -> None:
    (message,) = compiled(rabbitq.chord([add.s(1, 1) | add.s(5)], tsum.s()))
    assert CHORD_OPTION not in message.embed_extras
    assert message.chain is not None
    assert message.chain[-1]["options"][CHORD_OPTION]["index"] == 0


def test_a_group_followed_by_a_step_in_a_chain_becomes_a_chord() -> None:
    workflow = rabbitq.chain(add.s(1, 1), rabbitq.group(add.s(1), add.s(2)), tsum.s())
    assert isinstance(workflow.tasks[1], Chord)


def test_a_chord_of_an_empty_group_publishes_the_body_with_an_empty_list() -> None:
    (message,) = compiled(rabbitq.chord([], tsum.s()))
    assert message.task == "u.tsum" and message.args == [[]]


def test_signatures_round_trip_through_their_dict_form() -> None:
    workflow = rabbitq.chord([add.s(1, 1), add.s(2, 2) | add.s(3)], tsum.s().set(countdown=5))
    rebuilt = rabbitq.signature(workflow.to_dict(), app)
    assert rebuilt.to_dict() == workflow.to_dict()


def test_link_and_link_error_travel_as_callbacks_and_errbacks() -> None:
    (message,) = compiled(add.s(1, 1).set(link=tsum.s(), link_error=[add.s(0)]))
    assert message.callbacks is not None and message.callbacks[0]["task"] == "u.tsum"
    assert message.errbacks is not None and message.errbacks[0]["args"] == [0]


def test_reply_to_reaches_every_step_of_a_chain() -> None:
    (message,) = compiled(add.s(1, 1) | add.s(2), reply_to="rabbitq.reply.x")
    assert message.chain is not None
    assert message.chain[0]["options"]["reply_to"] == "rabbitq.reply.x"


def test_a_signature_without_an_app_says_how_to_bind_one() -> None:
    with pytest.raises(rabbitq.ConfigurationError, match="not bound to an app"):
        rabbitq.Signature("some.task").delay()


def test_chunks_split_items_into_starmaps() -> None:
    workflow = add.chunks([(i, i) for i in range(5)], 2)
    assert [len(member.kwargs["it"]) for member in workflow.tasks] == [2, 2, 1]
    assert {member.task for member in workflow.tasks} == {"celery.starmap"}
