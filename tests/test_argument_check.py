"""A delivery's arguments are checked against its task's signature before it runs.

The check takes a shortcut for positional arguments alone; whatever the shortcut accepts,
``inspect.Signature.bind`` must accept too, and whatever ``bind`` refuses is refused.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import rabbitq

app = rabbitq.App("argument-check")


def two_and_an_optional(a: Any, b: Any, c: Any = None) -> None: ...


def any_number(*args: Any) -> None: ...


def keyword_required(a: Any, *, b: Any) -> None: ...


def with_keywords(a: Any, **kwargs: Any) -> None: ...


def positional_only(a: Any, /, b: Any = 1) -> None: ...


FUNCTIONS = [two_and_an_optional, any_number, keyword_required, with_keywords, positional_only]
TASKS = {fn: app.task(name=f"check.{fn.__name__}")(fn) for fn in FUNCTIONS}


def _bind_accepts(fn: Any, args: list[Any], kwargs: dict[str, Any]) -> bool:
    try:
        inspect.signature(fn).bind(*args, **kwargs)
    except TypeError:
        return False
    return True


def _check_accepts(task: rabbitq.Task[Any, Any], args: list[Any], kwargs: dict[str, Any]) -> bool:
    try:
        task.check_arguments(args, kwargs)
    except TypeError:
        return False
    return True


@pytest.mark.parametrize("fn", FUNCTIONS, ids=lambda fn: fn.__name__)
@given(
    count=st.integers(min_value=0, max_value=5),
    keywords=st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=2, unique=True),
)
def test_the_check_agrees_with_the_signature(fn: Any, count: int, keywords: list[str]) -> None:
    task = TASKS[fn]
    args, kwargs = list(range(count)), dict.fromkeys(keywords, 0)
    assert _check_accepts(task, args, kwargs) == _bind_accepts(fn, args, kwargs)


def test_a_bound_task_is_checked_without_its_self() -> None:
    @app.task(name="check.bound", bind=True)
    def bound(self: rabbitq.Task[Any, Any], a: Any) -> None: ...

    bound.check_arguments([1], {})
    with pytest.raises(TypeError):
        bound.check_arguments([1, 2], {})
    with pytest.raises(TypeError):
        bound.check_arguments([], {})
