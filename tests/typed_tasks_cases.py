"""Right and wrong calls of typed tasks, for ``test_typing.py`` to run mypy on (never run).

A line that mypy must reject ends with ``# E: <error code>``; every other line must pass.
"""

from __future__ import annotations

from typing import Any, assert_type

from rabbitq import App, Task
from rabbitq.errors import TaskError
from rabbitq.results.handles import AsyncResult

app = App("typed", broker="amqp://guest:guest@127.0.0.1:1/")


@app.task
def add(a: int, b: int) -> int:
    return a + b


@app.task(queue="maths", max_retries=5)
def mul(a: int, b: int = 2) -> int:
    return a * b


@app.task
async def fetch(url: str, *, retries: int = 0) -> bytes:
    return url.encode() * (retries + 1)


@app.task(bind=True)
def bound(self: Task, x: int) -> str:
    return f"{self.name}: {x}"


@app.task(bind=True, queue="io")
async def abound(self: Task, x: int) -> str:
    return f"{self.name}: {x}"


@app.task(bind=False)
def unbound(x: int) -> int:
    return x


@app.task
def untyped(a, b):  # type: ignore[no-untyped-def]
    return a + b


# -- delay: the function's parameters ----------------------------------------------------------
assert_type(add.delay(1, 2), AsyncResult[int])
assert_type(add.delay(1, 2).get(), int)
assert_type(add.delay(a=1, b=2).get(timeout=5), int)
add.delay(1, "x")  # E: arg-type
add.delay(1)  # E: call-arg
add.delay(1, 2, c=3)  # E: call-arg
add.delay(1, 2, 3)  # E: call-arg
assert_type(mul.delay(3).get(), int)
mul.delay(b=3)  # E: call-arg
assert_type(unbound.delay(1).get(), int)
unbound.delay("1")  # E: arg-type

# A failure returned, not raised, is a TaskError.
assert_type(add.delay(1, 2).get(propagate=False), int | TaskError)

# -- async def tasks: the result is what the coroutine returns ---------------------------------
assert_type(fetch.delay("u"), AsyncResult[bytes])
assert_type(fetch.delay("u", retries=2).get(), bytes)
fetch.delay(1)  # E: call-overload
fetch.delay("u", 2)  # E: call-overload
fetch.delay("u", tries=2)  # E: call-overload

# -- bind=True: the task itself is not an argument ---------------------------------------------
assert_type(bound.delay(1).get(), str)
bound.delay("x")  # E: arg-type
bound.delay(bound, 1)  # E: call-arg, arg-type
assert_type(abound.delay(1).get(), str)
abound.delay()  # E: call-overload
assert_type(bound(1), str)


async def from_asyncio() -> None:
    assert_type(await add.adelay(1, 2), AsyncResult[int])
    assert_type(await (await add.adelay(1, 2)).aget(), int)
    assert_type(await (await add.adelay(1, 2)), int)
    assert_type(await (await fetch.adelay("u")).aget(), bytes)
    assert_type(await (await abound.adelay(1)).aget(), str)
    await add.adelay(1, "x")  # E: arg-type
    await fetch.adelay(b"u")  # E: call-overload
    assert_type(await add.aapply_async((1, 2)), AsyncResult[int])
    assert_type(await fetch.aapply_async(("u",)), AsyncResult[bytes])


# -- calling a task runs it here: typed like the function --------------------------------------
assert_type(add(1, 2), int)
add(1, "x")  # E: arg-type
add()  # E: call-arg


async def awaits_the_coroutine() -> None:
    assert_type(await fetch("u"), bytes)
    assert_type(await abound(1), str)


# -- loosely typed: signatures, apply_async's args, untyped functions --------------------------
add.s(2) | mul.s(3)
add.s("anything", "goes", extra=1)
add.si()
assert_type(add.apply_async((1, 2), countdown=10), AsyncResult[int])
assert_type(add.apply_async(args=("x",)).get(), int)
assert_type(fetch.apply_async(("u",)), AsyncResult[bytes])
assert_type(untyped.delay(1, "anything").get(), Any)
assert_type(app.AsyncResult("some-id").get(), Any)
registry: dict[str, Task] = {"add": add, "fetch": fetch, "bound": bound}

# -- delay_on_commit: delay's parameters, no result (Celery's returns None) -------------------
assert_type(add.delay_on_commit(1, 2), None)
add.delay_on_commit(1, "x")  # E: arg-type
add.delay_on_commit(1)  # E: call-arg
fetch.delay_on_commit(1)  # E: arg-type
assert_type(add.apply_async_on_commit((1, 2), countdown=10), None)
