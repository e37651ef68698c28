"""FastAPI (or any Starlette app): enqueue from async views with ``await task.adelay(...)``.

    uvicorn examples.fastapi.shop_api:api                 # the API
    rabbitq worker -A examples.fastapi.tasks -Q signups   # runs what it enqueues

The lifespan connects the app's async publisher at startup (a wrong broker URL fails the
start, not the first request) and closes it at shutdown (``app.aclose()``: in-flight confirms
are awaited, the connection closed). ``adelay`` publishes on the running event loop without
blocking it; ``delay`` from a sync (threadpool) view would use the publisher thread instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pydantic import BaseModel

from examples.fastapi.tasks import app, send_welcome


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    await app.async_publisher().connect()
    try:
        yield
    finally:
        await app.aclose()


api = FastAPI(lifespan=lifespan)


class Signup(BaseModel):
    email: str


@api.post("/signups", status_code=202)
async def sign_up(signup: Signup) -> dict[str, str]:
    # Returns once the broker has confirmed the message: it is safe on disk in RabbitMQ.
    result = await send_welcome.adelay(signup.email)
    return {"task_id": result.id}


@api.get("/")
async def health() -> dict[str, str]:
    return {"status": "ok"}
