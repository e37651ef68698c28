"""Compiling a signature into the messages that apply it now. Pure: no I/O.

``compile_signature`` walks a workflow (``canvas.py``) and returns the task messages to
publish at once plus the handle of the eventual result; whatever happens later rides inside
those messages:

* a chain's remaining steps ride in the message's ``chain`` (next step last, as Celery); on
  success the worker publishes the next step with the result prepended, then acks;
* a group's members are published together, confirms pipelined;
* a chord's header members carry ``rabbitq_chord`` (chord id, their index, the size and the
  body); the worker that runs one sends its result to the ``rabbitq.chords`` queue, whose
  single active consumer publishes the body once every index is in (``chords.py``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from rabbitq.canvas import (
    CHORD_OPTION,
    CONTINUATION_OPTION,
    Chain,
    Chord,
    Group,
    ResultHandle,
    Signature,
    signature,
)
from rabbitq.errors import ConfigurationError
from rabbitq.prepare import Context, PreparedMessage
from rabbitq.results.handles import AsyncResult


@dataclass
class Compiled:
    messages: list[PreparedMessage]
    result: ResultHandle


Preparer = Callable[[Signature, Context], PreparedMessage]


def compile_signature(sig: Signature, context: Context, prepare: Preparer) -> Compiled:
    """The messages that apply ``sig`` now, and the handle of its eventual result.

    ``prepare`` turns one task signature plus its context into a message (``App.prepare``).
    """
    if isinstance(sig, Chain):
        return _compile_chain(sig, context, prepare)
    if isinstance(sig, Group):
        return _compile_group(sig, context, prepare)
    if isinstance(sig, Chord):
        return _compile_chord(sig, context, prepare)
    result = sig.freeze()
    assert isinstance(result, AsyncResult)
    continuation = context.continuation + list(sig.options.get(CONTINUATION_OPTION) or [])
    member = context.chord_member or sig.options.get(CHORD_OPTION)
    if member is not None and continuation:
        # The chord waits for the end of this chain, not for this step.
        continuation = [*continuation[:-1], attach_chord_member(continuation[-1], member)]
        member = None
    step = replace(context, continuation=continuation, chord_member=member)
    return Compiled([prepare(sig, step)], result)


def _compile_chain(sig: Chain, context: Context, prepare: Preparer) -> Compiled:
    result = sig.freeze()  # the last step's handle
    steps = [step.copy() for step in sig.tasks]
    for option in ("link", "link_error"):
        for callback in sig.options.get(option) or []:
            # Celery: a chain's link follows its last step; link_error guards every step.
            targets = steps[-1:] if option == "link" else steps
            for step in targets:
                step.options = {**step.options, option: [*step.options.get(option, []), callback]}
    if context.reply_to:
        for step in steps[1:]:
            _propagate_reply_to(step, context.reply_to)
    rest = [step.to_dict() for step in steps[1:]]
    first = replace(context, continuation=rest + context.continuation)
    return Compiled(compile_signature(steps[0], first, prepare).messages, result)


def _compile_group(sig: Group, context: Context, prepare: Preparer) -> Compiled:
    if context.continuation:
        # A group followed by more steps is a chord whose body runs the rest.
        body = signature(context.continuation[0], sig.app)
        upgraded = Chord(sig, body, app=sig.app)
        rest = replace(context, continuation=context.continuation[1:])
        return _compile_chord(upgraded, rest, prepare)
    if context.chord_member is not None:
        raise ConfigurationError(
            "a group cannot be a member of a chord's header directly; put its members in the "
            "header, or wrap it in a chain with a step that collects its results"
        )
    if sig.options.get("link"):
        raise ConfigurationError(
            "a group's link (a chain or apply_async ending in a group, with link=) would run "
            "after one member, not the group; use a chord: chord(group, callback)"
        )
    result = sig.freeze()
    errbacks = _listed(sig.options.get("link_error"))  # every member's, as in Celery
    messages: list[PreparedMessage] = []
    for index, member in enumerate(sig.tasks):
        if errbacks:
            member = member.copy()
            member.options["link_error"] = [*_listed(member.options.get("link_error")), *errbacks]
        member_context = replace(context, group_id=result.id, group_index=index)
        messages.extend(compile_signature(member, member_context, prepare).messages)
    return Compiled(messages, result)


def _compile_chord(sig: Chord, context: Context, prepare: Preparer) -> Compiled:
    result = sig.freeze()  # the body's handle
    body = sig._require_body().copy()
    body.app = body.app or sig.app
    if context.reply_to:
        _propagate_reply_to(body, context.reply_to)
    if context.continuation:
        body.options[CONTINUATION_OPTION] = [
            *(body.options.get(CONTINUATION_OPTION) or []),
            *context.continuation,
        ]
    body_dict = body.to_dict()
    if context.chord_member is not None:
        body_dict = attach_chord_member(body_dict, context.chord_member)
    members = sig.header.tasks
    if not members:
        # Nothing to wait for: the body runs now, with an empty list.
        empty = Context(
            reply_to=context.reply_to,
            parent_result=([],),
            parent_id=context.parent_id,
            root_id=context.root_id,
        )
        compiled = compile_signature(signature(body_dict, sig.app), empty, prepare)
        return Compiled(compiled.messages, result)
    chord_id = sig.options["task_id"]
    messages: list[PreparedMessage] = []
    for index, member in enumerate(members):
        member_context = Context(
            parent_result=context.parent_result,
            reply_to=context.reply_to,
            parent_id=context.parent_id,
            root_id=context.root_id,
            chord_member={"id": chord_id, "index": index, "size": len(members), "body": body_dict},
            group_id=chord_id,
            group_index=index,
        )
        messages.extend(compile_signature(member, member_context, prepare).messages)
    return Compiled(messages, result)


def attach_chord_member(step: dict[str, Any], member: dict[str, Any]) -> dict[str, Any]:
    """``step`` (dict form) made to report its final result to the chord ``member`` names."""
    step = copy.deepcopy(step)
    kind = step.get("subtask_type")
    if kind == "chain":
        tasks = step["kwargs"]["tasks"]
        tasks[-1] = attach_chord_member(tasks[-1], member)
    elif kind == "chord":
        step["kwargs"]["body"] = attach_chord_member(step["kwargs"]["body"], member)
    elif kind == "group":
        raise ConfigurationError(
            "a chain ending in a group cannot be a chord member; end it with a task"
        )
    else:
        options = step.setdefault("options", {})
        continuation = options.get(CONTINUATION_OPTION)
        if continuation:
            continuation[-1] = attach_chord_member(continuation[-1], member)
        else:
            options[CHORD_OPTION] = member
    return step


def _listed(callbacks: Any) -> list[Any]:
    """A ``link``/``link_error`` value (one signature or several) as a list."""
    if not callbacks:
        return []
    return list(callbacks) if isinstance(callbacks, list | tuple) else [callbacks]


def _propagate_reply_to(sig: Signature, reply_to: str) -> None:
    if isinstance(sig, Chain | Group):
        for step in sig.tasks:
            _propagate_reply_to(step, reply_to)
    elif isinstance(sig, Chord):
        _propagate_reply_to(sig.header, reply_to)
        if sig.body is not None:
            _propagate_reply_to(sig.body, reply_to)
    else:
        sig.options.setdefault("reply_to", reply_to)
