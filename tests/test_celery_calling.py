"""Celery's calling conventions, without a broker: what calling a workflow publishes, the
handles it returns (``parent``, ``children``, ``date_done``), where ``map``/``starmap``/
``chunks`` go, and the names of tasks defined in a script run as ``__main__``.

The same conventions against real workers, following Celery's guides section by section:
``integration/test_celery_guides.py``.
"""

from __future__ import annotations

import datetime as dt
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import rabbitq
from rabbitq.message import decode_task
from rabbitq.prepare import PreparedMessage
from rabbitq.results.handles import as_tuple, result_from_tuple
from rabbitq.results.meta import ResultMeta, success
from rabbitq.routing import load_routing
from rabbitq.serializers import MSGPACK
from rabbitq.task_names import task_name_for
from tests.pipeline_support import harness, make_app, task_envelope

app = rabbitq.App("calling-unit", "amqp://unused/", default_queue="default")


@app.task(name="c.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="c.mul")
def mul(x: int, y: int) -> int:
    return x * y


@app.task(name="c.tsum")
def tsum(values: list[int]) -> int:
    return sum(values)


@app.task(name="c.send_email", queue="emails")
def send_email(to: str) -> str:
    return to


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[PreparedMessage]]:
    """What the app publishes, captured instead of sent."""
    captured: list[PreparedMessage] = []

    def publish(messages: list[PreparedMessage], retry: Any = None) -> None:
        captured.extend(messages)

    monkeypatch.setattr(app, "publish_prepared", publish)
    yield captured


def tasks_of(messages: list[PreparedMessage]) -> list[tuple[str, list[Any]]]:
    decoded = [decode_task(m.envelope) for m in messages]
    return [(m.task, m.args) for m in decoded]


# -- calling applies a workflow; calling a task signature runs it here ----------------------


def test_calling_a_chain_applies_it_and_returns_the_last_steps_handle(
    sent: list[PreparedMessage],
) -> None:
    result = rabbitq.chain(add.s(2, 2), add.s(4), add.s(8))()
    (message,) = [decode_task(m.envelope) for m in sent]
    assert (message.task, message.args) == ("c.add", [2, 2])
    assert message.chain is not None and result.id == message.chain[0]["options"]["task_id"]


def test_calling_a_partial_chain_prepends_the_arguments_to_its_first_step(
    sent: list[PreparedMessage],
) -> None:
    (add.s(4) | mul.s(8))(16)
    assert tasks_of(sent) == [("c.add", [16, 4])]


def test_calling_a_group_applies_it_and_returns_a_group_result(
    sent: list[PreparedMessage],
) -> None:
    result = rabbitq.group(add.s(i, i) for i in range(3))()
    assert isinstance(result, rabbitq.GroupResult)
    assert tasks_of(sent) == [("c.add", [0, 0]), ("c.add", [1, 1]), ("c.add", [2, 2])]
    assert [r.id for r in result.results] == [m.task_id for m in sent]


def test_calling_a_group_with_arguments_prepends_them_to_every_member(
    sent: list[PreparedMessage],
) -> None:
    rabbitq.group(add.s(1), add.s(2))(10)
    assert tasks_of(sent) == [("c.add", [10, 1]), ("c.add", [10, 2])]


def test_calling_a_chord_applies_it_and_returns_the_bodys_handle(
    sent: list[PreparedMessage],
) -> None:
    result = rabbitq.chord((add.s(i, i) for i in range(3)), tsum.s())()
    assert [task for task, _ in tasks_of(sent)] == ["c.add"] * 3
    assert isinstance(result, rabbitq.AsyncResult) and isinstance(
        result.parent, rabbitq.GroupResult
    )


def test_calling_a_chord_without_a_body_says_it_needs_one(sent: list[PreparedMessage]) -> None:
    with pytest.raises(rabbitq.ConfigurationError, match="a chord needs a body"):
        rabbitq.chord([add.s(4, 4), add.s(8, 8)])()
    assert sent == []


def test_calling_chunks_applies_them(sent: list[PreparedMessage]) -> None:
    result = add.chunks(zip(range(5), range(5), strict=True), 2)()
    assert isinstance(result, rabbitq.GroupResult) and len(result) == 3
    assert [task for task, _ in tasks_of(sent)] == ["celery.starmap"] * 3


def test_calling_a_task_signature_runs_it_here_and_publishes_nothing(
    sent: list[PreparedMessage],
) -> None:
    assert add.s(2, 2)() == 4
    assert add.s(2)(3) == 5
    assert sent == []


# -- result.parent ---------------------------------------------------------------------------


def test_parent_leads_back_along_a_chain(sent: list[PreparedMessage]) -> None:
    result = (add.si(2, 2) | add.si(4, 4) | add.si(8, 8))()
    assert isinstance(result, rabbitq.AsyncResult)
    assert result.parent is not None and result.parent.parent is not None
    (message,) = [decode_task(m.envelope) for m in sent]
    assert result.parent.parent.id == message.id
    assert message.chain is not None
    assert result.parent.id == message.chain[-1]["options"]["task_id"]
    assert result.parent.parent.parent is None


def test_the_parent_of_a_group_ending_a_chain_is_the_step_before(
    sent: list[PreparedMessage],
) -> None:
    result = (add.s(4, 4) | rabbitq.group(add.si(i, i) for i in range(3)))()
    assert isinstance(result, rabbitq.GroupResult)
    assert result.parent is not None and result.parent.id == sent[0].task_id


def test_a_chord_bodys_parent_is_the_header_group_and_its_parent_the_step_before(
    sent: list[PreparedMessage],
) -> None:
    result = (add.s(1, 1) | rabbitq.group(add.s(i) for i in range(3)) | tsum.s())()
    header = result.parent
    assert isinstance(header, rabbitq.GroupResult) and len(header) == 3
    assert header.parent is not None and header.parent.id == sent[0].task_id


def test_a_chains_task_id_is_its_last_steps(sent: list[PreparedMessage]) -> None:
    result = (add.s(1, 1) | add.s(2)).apply_async(task_id="the-last")
    (message,) = [decode_task(m.envelope) for m in sent]
    assert result.id == "the-last" and message.chain is not None
    assert message.chain[0]["options"]["task_id"] == "the-last"


def test_a_single_task_has_no_parent(sent: list[PreparedMessage]) -> None:
    assert add.s(1, 1).delay().parent is None


# -- the rest of Celery's canvas spelling ----------------------------------------------------


def test_a_group_of_one_in_a_chain_is_unrolled_as_celery_does() -> None:
    workflow = rabbitq.chain(add.s(2, 2), rabbitq.group(add.s(1)), add.s(1))
    assert [step.task for step in workflow.tasks] == ["c.add", "c.add", "c.add"]
    assert not any(isinstance(step, rabbitq.chord) for step in workflow.tasks)


def test_skew_gives_the_members_growing_countdowns_up_to_stop() -> None:
    group = add.chunks(zip(range(10), range(10), strict=True), 2).group().skew(start=1, stop=3)
    assert [member.options["countdown"] for member in group.tasks] == [1, 2, 3, 3, 3]


def test_chunks_group_is_a_plain_group_of_the_same_messages() -> None:
    chunks = add.chunks([(1, 1), (2, 2), (3, 3)], 2)
    group = chunks.group()
    assert type(group) is rabbitq.group and group.tasks == chunks.tasks


def test_on_error_adds_an_errback_and_returns_the_signature() -> None:
    sig = add.s(2, 2)
    assert sig.on_error(tsum.s()) is sig
    assert sig.options["link_error"] == [tsum.s()]


def test_clone_prepends_arguments_and_merges_keywords() -> None:
    assert add.s(2).clone(args=(4,), kwargs={"debug": True}) == add.s(4, 2, debug=True)


def test_a_signature_by_name_takes_celerys_arguments() -> None:
    sig = rabbitq.signature("c.add", args=(2, 2), countdown=10, app=app)
    assert (sig.task, sig.args, sig.options, sig.app) == ("c.add", (2, 2), {"countdown": 10}, app)


def test_a_signature_from_its_dict_form_still_takes_the_app_second() -> None:
    assert rabbitq.signature(add.s(1).to_dict(), app).app is app


def test_task_signature_takes_immutable_as_celery_does() -> None:
    sig = add.signature((2, 2), immutable=True)
    assert sig.immutable and sig.options == {}


def test_a_groups_errback_reaches_every_member(sent: list[PreparedMessage]) -> None:
    g = rabbitq.group(add.s(1, 1), add.s(2, 2))
    g.link_error(tsum.s())
    g()
    decoded = [decode_task(m.envelope) for m in sent]
    assert [len(m.errbacks or []) for m in decoded] == [1, 1]


def test_an_errback_given_to_a_groups_apply_async_reaches_every_member(
    sent: list[PreparedMessage],
) -> None:
    rabbitq.group(add.s(1, 1), add.s(2, 2)).apply_async(link_error=tsum.s())
    assert [len(decode_task(m.envelope).errbacks or []) for m in sent] == [1, 1]


def test_a_groups_link_is_refused_pointing_to_a_chord() -> None:
    with pytest.raises(rabbitq.ConfigurationError, match="use a chord"):
        rabbitq.group(add.s(1, 1), add.s(2, 2)).link(tsum.s())


# -- map, starmap and chunks go to the mapped task's queue -----------------------------------


def test_map_starmap_and_chunks_go_to_the_mapped_tasks_queue(
    sent: list[PreparedMessage],
) -> None:
    send_email.map(["a@x", "b@x"]).delay()
    send_email.starmap([("a@x",)]).delay()
    send_email.chunks([("a@x",), ("b@x",)], 1)()
    assert {m.route.queue for m in sent} == {"emails"}
    assert {m.routing_key for m in sent} == {"emails"}


def test_a_mapped_tasks_route_in_the_routing_file_is_taken(
    sent: list[PreparedMessage], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    routing = tmp_path / "routing.yaml"
    routing.write_text("queues:\n  reports: {}\ntasks:\n  c.add: reports\n")
    monkeypatch.setattr(app, "topology", load_routing(routing))
    add.map([1]).delay()
    (message,) = sent
    assert message.routing_key == "reports"


def test_an_explicit_queue_still_wins_for_map(sent: list[PreparedMessage]) -> None:
    send_email.map(["a@x"]).apply_async(queue="bulk")
    (message,) = sent
    assert message.route.queue == "bulk"


def test_map_of_a_task_without_a_queue_goes_to_the_default_queue(
    sent: list[PreparedMessage],
) -> None:
    add.starmap([(1, 2)]).delay()
    (message,) = sent
    assert message.route.queue == "default"


# -- date_done, children, GroupResult.save/restore -------------------------------------------


class Meta:
    """A backend that answers ``state`` with a given document (the handles read no more)."""

    def __init__(self, meta: ResultMeta) -> None:
        self.meta = meta

    @property
    def backend(self) -> Any:
        return self

    def state(self, task_id: str) -> ResultMeta:
        return self.meta


def test_date_done_is_when_the_task_finished() -> None:
    meta = success("t1", 4)
    done = rabbitq.AsyncResult("t1", Meta(meta)).date_done
    assert isinstance(done, dt.datetime) and done.tzinfo is not None
    assert done.isoformat() == meta.date_done


def test_date_done_is_none_while_pending() -> None:
    assert rabbitq.AsyncResult("t1", Meta(ResultMeta("t1"))).date_done is None


def test_children_are_the_handles_the_task_sent_on() -> None:
    sent_on = [as_tuple(rabbitq.AsyncResult("c1")), as_tuple(rabbitq.AsyncResult("c2"))]
    children = rabbitq.AsyncResult("t1", Meta(success("t1", 4, sent_on))).children
    assert children is not None and [child.id for child in children] == ["c1", "c2"]


def test_children_is_none_until_the_task_finished() -> None:
    assert rabbitq.AsyncResult("t1", Meta(ResultMeta("t1"))).children is None


def test_handles_round_trip_through_celerys_tuple_form() -> None:
    group = rabbitq.GroupResult("g", [rabbitq.AsyncResult("a"), rabbitq.AsyncResult("b")])
    last = rabbitq.AsyncResult("z", parent=group)
    form = as_tuple(last)
    assert form == [["z", [["g", None], [[["a", None], None], [["b", None], None]]]], None]
    rebuilt = result_from_tuple(form)
    assert rebuilt.id == "z" and isinstance(rebuilt.parent, rabbitq.GroupResult)
    assert [r.id for r in rebuilt.parent.results] == ["a", "b"]


def test_celerys_children_as_a_celery_worker_stores_them_are_read() -> None:
    # Celery's JSON for [AsyncResult("c1").as_tuple()]
    (child,) = (
        rabbitq.AsyncResult("t", Meta(success("t", 1, [[["c1", None], None]]))).children or []
    )
    assert isinstance(child, rabbitq.AsyncResult) and child.id == "c1"


def test_group_result_save_and_restore_say_they_are_not_supported_and_what_instead() -> None:
    result = rabbitq.GroupResult("g", [rabbitq.AsyncResult("a")])
    with pytest.raises(rabbitq.NotSupportedError, match=r"save\(\).*not supported.*AsyncResult"):
        result.save()
    with pytest.raises(NotImplementedError, match="not supported"):
        rabbitq.GroupResult.restore("g")


def test_waiting_is_true_while_a_member_is_not_ready() -> None:
    pending = rabbitq.AsyncResult("a", Meta(ResultMeta("a")))
    assert rabbitq.GroupResult("g", [pending]).waiting()


# -- tasks defined in a script run as __main__ ------------------------------------------------


def _script_function() -> None:
    return None


@pytest.fixture
def main_module(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType("__main__")
    monkeypatch.setitem(sys.modules, "__main__", module)
    monkeypatch.setattr(_script_function, "__module__", "__main__")
    return module


def test_a_task_in_a_script_is_named_after_the_file_a_worker_imports(
    main_module: types.ModuleType, tmp_path: Path
) -> None:
    main_module.__file__ = str(tmp_path / "tasks.py")
    assert task_name_for(_script_function, "proj") == "tasks._script_function"


def test_a_script_inside_a_package_is_named_with_its_package(
    main_module: types.ModuleType, tmp_path: Path
) -> None:
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "__init__.py").write_text("")
    main_module.__file__ = str(tmp_path / "proj" / "tasks.py")
    assert task_name_for(_script_function, "x") == "proj.tasks._script_function"


def test_a_module_run_with_python_m_is_named_as_imported(main_module: types.ModuleType) -> None:
    main_module.__spec__ = types.SimpleNamespace(name="proj.tasks")  # type: ignore[assignment]
    assert task_name_for(_script_function, "x") == "proj.tasks._script_function"


def test_without_a_file_the_apps_name_is_used_as_celery_does(
    main_module: types.ModuleType,
) -> None:
    assert task_name_for(_script_function, "proj") == "proj._script_function"


def test_app_task_names_a_script_task_after_its_module(
    main_module: types.ModuleType, tmp_path: Path
) -> None:
    main_module.__file__ = str(tmp_path / "shop.py")
    local = rabbitq.App("anything", "amqp://unused/")
    assert local.task(_script_function).name == "shop._script_function"


def test_a_task_in_an_imported_module_keeps_its_module_name() -> None:
    assert task_name_for(test_a_task_in_an_imported_module_keeps_its_module_name, "x") == (
        f"{__name__}.test_a_task_in_an_imported_module_keeps_its_module_name"
    )


# -- the worker records what a task sent on as its children ---------------------------------


async def test_a_worker_records_the_callbacks_and_next_step_it_sent_as_children() -> None:
    worker_app = make_app(result_backend="rpc://")
    worker_app.task(name="c.add")(add.fn)
    callback = add.s(16).set(task_id="the-callback").to_dict()
    following = add.s(1).set(task_id="the-next-step").to_dict()
    h = harness(worker_app)
    await h.deliver(
        task_envelope("c.add", 2, 2, reply_to="caller", callbacks=[callback], chain=[following])
    )
    (reply,) = h.publisher.to("caller")
    document = MSGPACK.loads(reply.envelope.body)
    assert document["status"] == "SUCCESS" and document["result"] == 4
    children = [result_from_tuple(child).id for child in document["children"]]
    assert children == ["the-next-step", "the-callback"]
    sent = {decode_task(p.envelope).id for p in h.publisher.published if p.routing_key != "caller"}
    assert sent == {"the-next-step", "the-callback"}
